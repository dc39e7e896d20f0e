/**
 * `export`: an image's filesystem as one tar, whiteouts applied, streamed in a single pass over the
 * layers from the top down (as crane's export does): the first time a path appears it is final;
 * whiteouts, opaque markers and anything that is not a directory hide what lower layers hold
 * below them. Hard links are kept right: a link whose target is final in a lower layer waits for
 * it; a link whose target an upper layer replaced or deleted carries the old content as a file.
 * Directory entries come last, so extracting the tar leaves their recorded times.
 */
import type { Readable } from "node:stream";
import { shortDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import type { Descriptor, ImageConfig, ImageManifest } from "../spec/documents.ts";
import type { Fetcher } from "../store/store.ts";
import type { TarHeader } from "../tar/reader.ts";
import { type TarHeaderInput, TarWriter } from "../tar/writer.ts";
import { opaqueMarker, whiteoutPrefix } from "./apply.ts";
import { readLayer } from "./read-layer.ts";

/** Paths hidden from lower layers: whole subtrees, or only the children of a directory. */
class Hidden {
  readonly #subtrees = new Set<string>();
  readonly #children = new Set<string>();

  hideSubtree(path: string): void {
    this.#subtrees.add(path);
  }

  hideChildren(dir: string): void {
    this.#children.add(dir);
  }

  merge(other: Hidden): void {
    for (const path of other.#subtrees) this.#subtrees.add(path);
    for (const dir of other.#children) this.#children.add(dir);
  }

  has(path: string): boolean {
    if (this.#subtrees.has(path)) return true;
    for (let at = path.lastIndexOf("/"); ; at = path.lastIndexOf("/", at - 1)) {
      const ancestor = at < 0 ? "" : path.slice(0, at);
      if (this.#children.has(ancestor) || (ancestor !== "" && this.#subtrees.has(ancestor))) return true;
      if (at <= 0) return false;
    }
  }
}

export function exportImage(
  store: Fetcher,
  manifest: ImageManifest,
  config: ImageConfig,
  onProgress?: (layer: number, layers: number) => void,
): Readable {
  const tar = new TarWriter();
  const run = async () => {
    const seen = new Set<string>();
    const hidden = new Hidden();
    /** Links (from upper layers) whose target's final content lies in a lower layer, by target. */
    const waiting = new Map<string, TarHeaderInput[]>();
    const directories: TarHeaderInput[] = [];
    const layers = manifest.layers;
    for (let index = layers.length - 1; index >= 0; index--) {
      const layer = layers[index]!;
      const name = `layer ${index + 1}/${layers.length} (${shortDigest(layer.digest)})`;
      const reading = await readLayer(store, layer, config.rootfs.diff_ids[index]);
      const hiddenBelow = new Hidden();
      const written = new Set<string>();
      const skippedFiles = new Set<string>();
      for await (const entry of reading.entries) {
        const { header } = entry;
        const path = normalise(header.path, name);
        if (path === "") continue;
        const slash = path.lastIndexOf("/");
        const base = path.slice(slash + 1);
        const parent = slash < 0 ? "" : path.slice(0, slash);
        if (base === opaqueMarker) {
          hiddenBelow.hideChildren(parent);
          continue;
        }
        if (base.startsWith(whiteoutPrefix)) {
          if (!base.startsWith(`${whiteoutPrefix}${whiteoutPrefix}`)) {
            const target = base.slice(whiteoutPrefix.length);
            hiddenBelow.hideSubtree(parent ? `${parent}/${target}` : target);
          }
          continue;
        }
        if (header.type !== "dir") hiddenBelow.hideSubtree(path); // replaces whatever lower layers had there
        const input = toInput(path, header, name);
        if (seen.has(path) || hidden.has(path)) {
          // Not final here; but an upper layer's hard link may need this layer's content of it.
          const links = waiting.get(path);
          if (header.type === "file" && links) {
            waiting.delete(path);
            await writeLinksWithContent(tar, links, input, entry.body);
          }
          if (header.type === "file") skippedFiles.add(path);
          continue;
        }
        seen.add(path);
        if (header.type === "dir") {
          directories.push(input);
          continue;
        }
        if (header.type === "link") {
          const target = input.linkname!;
          if (written.has(target)) await tar.entry(input);
          else if (skippedFiles.has(target)) {
            await withContentOf(store, layer, target, name, (content, body) =>
              writeLinksWithContent(tar, [input], content, body),
            );
          } else waiting.set(target, [...(waiting.get(target) ?? []), input]);
          written.add(path);
          continue;
        }
        await tar.entry(input, header.type === "file" ? entry.body : undefined);
        written.add(path);
        const links = waiting.get(path);
        if (links) {
          waiting.delete(path);
          for (const link of links) await tar.entry({ ...link, linkname: path });
        }
      }
      await reading.done();
      hidden.merge(hiddenBelow);
      onProgress?.(layers.length - index, layers.length);
    }
    const [missing] = waiting.keys();
    if (missing !== undefined) {
      throw new RociError("CORRUPT_LAYER", `hard link target ${missing} is in no layer of the image`, {
        subject: missing,
      });
    }
    for (const directory of directories) await tar.entry(directory);
    await tar.finish();
  };
  run().catch((error: unknown) => tar.destroy(error as Error));
  return tar.readable;
}

/** The first link becomes a file with the content; the others link to it. */
async function writeLinksWithContent(
  tar: TarWriter,
  links: readonly TarHeaderInput[],
  content: TarHeaderInput,
  body: Readable,
): Promise<void> {
  const [first, ...others] = links;
  if (!first) return;
  await tar.entry({ ...content, path: first.path }, body);
  for (const link of others) await tar.entry({ ...link, linkname: first.path });
}

/** Reads one file of a layer again (a link in the same layer needs its content after all). */
async function withContentOf(
  store: Fetcher,
  layer: Descriptor,
  path: string,
  name: string,
  use: (content: TarHeaderInput, body: Readable) => Promise<void>,
): Promise<void> {
  const reading = await readLayer(store, layer);
  for await (const entry of reading.entries) {
    if (entry.header.type === "file" && normalise(entry.header.path, name) === path) {
      await use(toInput(path, entry.header, name), entry.body); // consumed before the reader moves on
      return;
    }
  }
  throw new RociError("CORRUPT_LAYER", `${name}: hard link target ${path} not found`, { subject: path });
}

function normalise(path: string, layer: string): string {
  if (path.startsWith("/")) throw unsafe(path, layer, "absolute path");
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw unsafe(path, layer, "a `..` component");
  return parts.join("/");
}

function unsafe(path: string, layer: string, why: string): RociError {
  return new RociError("UNSAFE_PATH", `${layer}: entry ${JSON.stringify(path)} refused: ${why}`, {
    subject: path,
  });
}

function toInput(path: string, header: TarHeader, layer: string): TarHeaderInput {
  if (header.type === "unknown") {
    throw new RociError("CORRUPT_LAYER", `${layer}: entry ${path}: unknown tar type "${header.typeflag}"`);
  }
  return {
    path: header.type === "dir" ? `${path}/` : path,
    type: header.type,
    mode: header.mode,
    uid: header.uid,
    gid: header.gid,
    uname: header.uname,
    gname: header.gname,
    size: header.size,
    mtime: Math.floor(header.mtime),
    linkname: header.type === "link" ? normalise(header.linkname, layer) : header.linkname,
    devmajor: header.devmajor,
    devminor: header.devminor,
    xattrs: header.xattrs,
  };
}
