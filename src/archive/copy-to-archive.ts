/**
 * `roci copy SRC oci-archive:OUT.tar` and `docker-archive:OUT.tar`: the image is copied into a
 * staging layout beside the output (so blobs can be linked, and the copy engine does the work it
 * does everywhere), together with the images the archive already holds, then the layout is
 * serialised into the archive deterministically and renamed into place.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type CopyOptions, type CopyResult, copyImage } from "../copy/copy.ts";
import { RociError } from "../errors.ts";
import { fetchManifest } from "../image/documents.ts";
import { selectImage } from "../image/select.ts";
import { familiarString, parseDockerReference } from "../reference/docker-reference.ts";
import { Annotation } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import { LayoutStore } from "../store/layout-store.ts";
import type { EntryName } from "../store/naming.ts";
import type { ImageStore } from "../store/store.ts";
import { OciArchiveStore } from "./oci-archive-store.ts";
import { type DockerArchiveImage, writeLayoutArchive } from "./write-archive.ts";

export interface ArchiveCopyOptions extends CopyOptions {
  format: "oci" | "docker";
  names: readonly EntryName[];
  onDebug?: (message: string) => void;
}

export async function copyToArchive(
  source: ImageStore,
  root: Descriptor,
  output: string,
  options: ArchiveCopyOptions,
): Promise<CopyResult> {
  const staging = await mkdtemp(join(dirname(resolve(output)), `.${basename(output)}.roci-`));
  try {
    const store = await LayoutStore.init(staging, { onDebug: options.onDebug });
    await keepExistingImages(output, store);
    let top = root;
    // A docker-save archive holds single-platform images: narrow an index to one platform.
    if (options.format === "docker" && isIndexType(root.mediaType)) {
      const platform = options.platforms === "all" ? undefined : options.platforms?.[0];
      top = (await selectImage(source, root, { platform, strict: options.strictPlatform ?? false }))
        .descriptor;
    }
    const result = await copyImage(
      source,
      top,
      store,
      options.format === "docker" ? { ...options, platforms: "all" } : options,
    );
    if (options.names.length > 0) await store.tag(result.root, options.names);
    else {
      await store.updateIndex((manifests) => {
        if (!manifests.some((entry) => entry.digest === result.root.digest)) manifests.push(result.root);
      });
    }
    const docker = options.format === "docker" ? await dockerImages(store) : undefined;
    await writeLayoutArchive(staging, output, docker ? { docker } : {});
    return result;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** An existing output archive's images are kept: "several images and tags in one archive". */
async function keepExistingImages(output: string, store: LayoutStore): Promise<void> {
  if (
    !(await stat(output).then(
      (info) => info.isFile(),
      () => false,
    ))
  )
    return;
  const existing = await OciArchiveStore.open(output).catch((cause: unknown) => {
    throw new RociError("CONFLICT", `${output}: exists and is not an archive roci can add to`, {
      cause,
      subject: output,
      hint: "choose a new file name, or remove the old archive",
    });
  });
  try {
    const { manifests } = await existing.index();
    for (const entry of manifests) await copyImage(existing, entry, store);
    await store.updateIndex((current) => {
      current.push(...manifests);
    });
  } finally {
    await existing.close();
  }
}

/** manifest.json's entries: each image manifest with the familiar names index.json gives it. */
async function dockerImages(store: LayoutStore): Promise<DockerArchiveImage[]> {
  const images = new Map<string, DockerArchiveImage & { repoTags: string[] }>();
  for (const entry of (await store.index()).manifests) {
    if (!isManifestType(entry.mediaType)) continue;
    let image = images.get(entry.digest);
    if (!image) {
      const manifest = (await fetchManifest(store, entry)).value;
      image = {
        config: manifest.config.digest,
        layers: manifest.layers.map((layer) => layer.digest),
        repoTags: [],
      };
      images.set(entry.digest, image);
    }
    const name = entry.annotations?.[Annotation.containerdName];
    if (name) image.repoTags.push(familiarString(parseDockerReference(name)));
  }
  return [...images.values()];
}
