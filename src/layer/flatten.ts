/**
 * `export`: an image's filesystem as one tar, whiteouts applied, streamed in a single pass over the
 * layers from the top down (as crane's export does): the first time a path appears it is final;
 * whiteouts, opaque markers and files replacing directories hide what lower layers hold there.
 * Entries keep each layer's own order, so a hard link still follows its target.
 */
import type { Readable } from "node:stream";
import { shortDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import type { ImageConfig, ImageManifest } from "../spec/documents.ts";
import type { Fetcher } from "../store/store.ts";
import type { TarHeader } from "../tar/reader.ts";
import { TarWriter } from "../tar/writer.ts";
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
    const layers = manifest.layers;
    for (let index = layers.length - 1; index >= 0; index--) {
      const layer = layers[index]!;
      const name = `layer ${index + 1}/${layers.length} (${shortDigest(layer.digest)})`;
      const reading = await readLayer(store, layer, config.rootfs.diff_ids[index]);
      const hiddenBelow = new Hidden();
      for await (const entry of reading.entries) {
        const path = normalise(entry.header.path, name);
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
            hiddenBelow.hideSubtree(
              parent ? `${parent}/${base.slice(whiteoutPrefix.length)}` : base.slice(whiteoutPrefix.length),
            );
          }
          continue;
        }
        if (seen.has(path) || hidden.has(path)) continue;
        seen.add(path);
        if (entry.header.type !== "dir") hiddenBelow.hideSubtree(path);
        await tar.entry(
          toInput(path, entry.header, name),
          entry.header.type === "file" ? entry.body : undefined,
        );
      }
      await reading.done();
      hidden.merge(hiddenBelow);
      onProgress?.(layers.length - index, layers.length);
    }
    await tar.finish();
  };
  run().catch((error: unknown) => tar.destroy(error as Error));
  return tar.readable;
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

function toInput(path: string, header: TarHeader, layer: string) {
  if (header.type === "unknown")
    throw new RociError("CORRUPT_LAYER", `${layer}: entry ${path}: unknown tar type "${header.typeflag}"`);
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
