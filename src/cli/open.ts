/**
 * From what a user typed to a store and a selector inside it. Every input is opened read-only;
 * there is no other way to open one here. Layout directories and archives (OCI and docker-save
 * tars, read in place) are all ImageStores, so every command works on each of them.
 */
import { open, stat } from "node:fs/promises";
import { DockerArchiveStore } from "../archive/docker-archive-store.ts";
import { OciArchiveStore } from "../archive/oci-archive-store.ts";
import { RociError } from "../errors.ts";
import { fetchConfig } from "../image/documents.ts";
import { type SelectedImage, selectImage } from "../image/select.ts";
import { sniffCompression } from "../layer/compression.ts";
import { formatDockerReference } from "../reference/docker-reference.ts";
import { type ImageReference, parseReference } from "../reference/reference.ts";
import type { ImageConfig, Parsed } from "../spec/documents.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import type { ImageStore, Selector } from "../store/store.ts";
import type { CliContext } from "./context.ts";
import { type PlatformFlags, platformFlags } from "./options.ts";

export interface Opened {
  store: ImageStore;
  selector: Selector;
  reference: ImageReference;
}

const transportPrefix = /^(oci-layout:\/\/|ocidir:\/\/|docker:\/\/|oci:|oci-archive:|docker-archive:)/;

/**
 * Parses a reference. Bare input is a layout path when it looks like one (starts with `/`, `.`
 * or `~`) or names something on disk; otherwise it is a registry reference.
 */
export async function parseUserReference(input: string): Promise<ImageReference> {
  if (transportPrefix.test(input)) return parseReference(input);
  const asLayout = parseReference(input, { bare: "layout" });
  if (asLayout.transport !== "oci-layout") return asLayout;
  if (/^[/.~]/.test(input) || (await isFile(asLayout.path)) !== undefined) return asLayout;
  return parseReference(input, { bare: "registry" });
}

/** A file given where a layout was expected must at least look like an archive (tar, gzip, zstd). */
async function requireArchive(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    const tar = bytesRead >= 262 && head.subarray(257, 262).toString("latin1") === "ustar";
    if (tar || sniffCompression(head.subarray(0, bytesRead)) !== "none") return;
  } finally {
    await handle.close();
  }
  throw new RociError(
    "INVALID_LAYOUT",
    `layout ${path}: is a file, neither an OCI layout directory nor a tar archive`,
    {
      subject: path,
      hint: "an OCI layout is a directory holding oci-layout, index.json and blobs/, or a tar of one",
    },
  );
}

/** true for a file, false for anything else that exists, undefined when nothing is there. */
async function isFile(path: string): Promise<boolean | undefined> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return undefined;
  }
}

export async function openReference(input: string, context: CliContext): Promise<Opened> {
  const reference = await parseUserReference(input);
  const options = {
    onWarning: context.warn,
    onDebug: context.debug ? (message: string) => context.warn(`debug: ${message}`) : undefined,
  };
  switch (reference.transport) {
    case "oci-layout": {
      const selector = { tag: reference.tag, digest: reference.digest };
      // A path to a file is an archive holding a layout (buildx#1553's ask), read in place.
      if (await isFile(reference.path)) {
        await requireArchive(reference.path);
        return { store: await OciArchiveStore.open(reference.path, options), selector, reference };
      }
      return { store: await LayoutReader.open(reference.path, options), selector, reference };
    }
    case "oci-archive": {
      const store = await OciArchiveStore.open(reference.path, options);
      return { store, selector: { tag: reference.tag, digest: reference.digest }, reference };
    }
    case "docker-archive": {
      const store = await DockerArchiveStore.open(reference.path, options);
      if (reference.name === undefined && reference.index === undefined)
        return { store, selector: {}, reference };
      // The image is chosen by name or position in manifest.json, then named by its digest.
      const name = reference.name && formatDockerReference(reference.name);
      const chosen = await store.resolveEntry({ name, index: reference.index });
      return { store, selector: { digest: chosen.digest as Selector["digest"] }, reference };
    }
    case "registry":
      throw new RociError(
        "UNSUPPORTED_TRANSPORT",
        `${input}: registry references are not supported yet, and no layout directory or archive has that name`,
        {
          subject: input,
          hint: "name an OCI layout or archive: PATH, oci-layout://PATH[:TAG][@DIGEST], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG|:@N]",
        },
      );
  }
}

/**
 * Opens a reference down to one image: narrowed by platform (the host's unless flags say), with
 * its manifest and config read and verified — what unpack, export and config work on.
 */
export async function openImage(
  input: string,
  context: CliContext,
  flags: PlatformFlags,
): Promise<{ store: ImageStore; image: SelectedImage; config: Parsed<ImageConfig> }> {
  const { store, selector } = await openReference(input, context);
  const image = await selectImage(store, await store.resolve(selector), platformFlags(flags));
  return { store, image, config: await fetchConfig(store, image.manifest.value.config) };
}

/** Opens a whole store (for ls, tags, verify); a tag or digest in the input is refused. */
export async function openLayout(input: string, context: CliContext): Promise<ImageStore> {
  const opened = await openReference(input, context);
  const named =
    opened.reference.transport === "docker-archive"
      ? opened.reference.name !== undefined || opened.reference.index !== undefined
      : opened.selector.tag !== undefined || opened.selector.digest !== undefined;
  if (named) {
    throw new RociError("USAGE", `${input}: this command takes a layout or archive, not an image in it`, {
      subject: input,
      hint: `drop the :TAG or @DIGEST, e.g. ${opened.store.location}`,
    });
  }
  return opened.store;
}
