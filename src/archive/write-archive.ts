/**
 * Serialises a layout directory into a tar archive, deterministically: entries sorted bytewise,
 * parents first, times 0, owner 0:0, modes 0644/0755, no padding beyond the two end blocks — so the
 * same layout gives the same archive bytes. The docker flavour adds `manifest.json` and
 * `repositories` beside the OCI layout (the Docker ≥ 25 shape): `docker load` on either image
 * store, `ctr images import`, and skopeo's `docker-archive:` and `oci-archive:` all read it.
 * Written under a temp name, fsynced and renamed: a failed write never leaves a valid-looking tar.
 */
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { comparePaths } from "../layer/entry.ts";
import { TarWriter } from "../tar/writer.ts";

/** One image of a docker-flavoured archive, as `manifest.json` lists it. */
export interface DockerArchiveImage {
  config: string;
  layers: readonly string[];
  repoTags: readonly string[];
}

export interface ArchiveExtras {
  /** With these, the archive is also a `docker save` archive. */
  docker?: readonly DockerArchiveImage[];
}

const blobPathOf = (digest: string) => `blobs/${digest.replace(":", "/")}`;

export async function writeLayoutArchive(
  layout: string,
  output: string,
  extras: ArchiveExtras = {},
): Promise<void> {
  const files = (await listFiles(layout)).sort(comparePaths);
  const documents = new Map<string, Buffer>();
  if (extras.docker) {
    const manifest = extras.docker.map((image) => ({
      Config: blobPathOf(image.config),
      RepoTags: [...image.repoTags],
      Layers: image.layers.map(blobPathOf),
    }));
    documents.set("manifest.json", Buffer.from(`${JSON.stringify(manifest)}\n`));
    documents.set("repositories", Buffer.from(`${JSON.stringify(repositories(extras.docker))}\n`));
  }
  const names = [...files, ...documents.keys()].sort(comparePaths);
  const directories = [...new Set(names.flatMap(parentsOf))].sort(comparePaths);
  const entries = [
    ...directories.map((path) => ({ path, dir: true })),
    ...names.map((path) => ({ path, dir: false })),
  ].sort((a, b) => comparePaths(a.path, b.path));

  const temp = `${output}.${randomBytes(6).toString("hex")}.partial`;
  try {
    const tar = new TarWriter();
    const written = pipeline(tar.readable, createWriteStream(temp, { flags: "wx", mode: 0o644 }));
    const produced = (async () => {
      for (const { path, dir } of entries) {
        if (dir) {
          await tar.entry({ path: `${path}/`, type: "dir", mode: 0o755 });
          continue;
        }
        const document = documents.get(path);
        if (document) {
          await tar.entry({ path, type: "file", mode: 0o644 }, document);
          continue;
        }
        const full = join(layout, path);
        const { size } = await stat(full);
        await tar.entry(
          { path, type: "file", mode: 0o644, size },
          createReadStream(full, { highWaterMark: 1024 * 1024 }),
        );
      }
      await tar.finish();
    })();
    produced.catch((error: unknown) => tar.destroy(error as Error));
    await Promise.all([written, produced]);
    const handle = await open(temp, "r");
    await handle.sync().finally(() => handle.close());
    await rename(temp, output);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** The layout's own files: oci-layout, index.json and blobs (not locks, not temp files). */
async function listFiles(layout: string): Promise<string[]> {
  const files = ["oci-layout", "index.json"];
  for (const algorithm of await readdir(join(layout, "blobs"))) {
    for (const name of await readdir(join(layout, "blobs", algorithm)))
      files.push(`blobs/${algorithm}/${name}`);
  }
  return files;
}

function parentsOf(path: string): string[] {
  const parts = path.split("/");
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
}

/**
 * The legacy `repositories` file: repository → tag → image id. Loaders that find manifest.json
 * ignore it; it is written for tools that still look for it.
 */
function repositories(images: readonly DockerArchiveImage[]): Record<string, Record<string, string>> {
  const result: Record<string, Record<string, string>> = {};
  for (const image of images) {
    for (const repoTag of image.repoTags) {
      const colon = repoTag.lastIndexOf(":");
      const repository = repoTag.slice(0, colon);
      const tags = result[repository] ?? {};
      tags[repoTag.slice(colon + 1)] = image.config.replace(/^sha256:/, "");
      result[repository] = tags;
    }
  }
  return result;
}
