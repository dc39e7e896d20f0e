/**
 * `unpack`: an image's layers applied in order into a directory, each layer's digest and diff_id
 * verified while it is read. A marker file says "incomplete" from the first byte written until the
 * last layer checked out, so a failed unpack never looks like a finished rootfs.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { shortDigest } from "../digest/digest.ts";
import { errnoOf, RociError } from "../errors.ts";
import type { ImageConfig, ImageManifest } from "../spec/documents.ts";
import type { Fetcher } from "../store/store.ts";
import { RootfsApplier } from "./apply.ts";
import { readLayer } from "./read-layer.ts";
import { runtimeConfig } from "./runtime-config.ts";

export const incompleteMarker = ".roci-unpack-incomplete";

export interface UnpackOptions {
  rootless?: boolean;
  /** Unpack into a non-empty directory (files there may be overwritten). */
  force?: boolean;
  /** An OCI runtime bundle: the rootfs under `rootfs/`, and `config.json` beside it, as umoci does. */
  bundle?: boolean;
  onWarning?: (message: string) => void;
  onProgress?: (progress: { layer: number; layers: number; bytes: number }) => void;
}

export interface UnpackResult {
  rootfs: string;
  layers: number;
  /** Uncompressed bytes applied. */
  bytes: number;
  rootless: boolean;
}

export async function unpackImage(
  store: Fetcher,
  manifest: ImageManifest,
  config: ImageConfig,
  target: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const diffIds = config.rootfs.diff_ids;
  if (config.rootfs.type !== "layers") {
    throw new RociError(
      "INVALID_DOCUMENT",
      `image config: rootfs.type "${config.rootfs.type}" is not "layers"`,
    );
  }
  if (diffIds.length !== manifest.layers.length) {
    throw new RociError(
      "INVALID_DOCUMENT",
      `image config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers`,
      { hint: "the image is inconsistent; rebuild or re-export it" },
    );
  }
  const empty = await prepareTarget(target, options.force ?? false);
  const marker = join(target, incompleteMarker);
  await writeFile(marker, "roci unpack did not finish; this directory is not a complete image filesystem\n");
  const rootfs = options.bundle ? join(target, "rootfs") : target;
  await mkdir(rootfs, { recursive: true });
  const applier = new RootfsApplier(rootfs, {
    rootless: options.rootless,
    onWarning: options.onWarning,
    reserved: options.bundle ? [] : [incompleteMarker],
    emptyTarget: empty,
  });
  let bytes = 0;
  for (const [index, layer] of manifest.layers.entries()) {
    const name = `layer ${index + 1}/${manifest.layers.length} (${shortDigest(layer.digest)})`;
    const reading = await readLayer(store, layer, diffIds[index]);
    await applier.apply(reading.entries, name);
    bytes += (await reading.done()).bytes;
    options.onProgress?.({ layer: index + 1, layers: manifest.layers.length, bytes });
  }
  if (options.bundle) {
    await writeFile(
      join(target, "config.json"),
      `${JSON.stringify(runtimeConfig(config, rootfs), null, 2)}\n`,
    );
  }
  await rm(marker);
  return { rootfs, layers: manifest.layers.length, bytes, rootless: applier.rootless };
}

/** Creates the target or checks it is empty (unless forced); says whether it is empty. */
async function prepareTarget(target: string, force: boolean): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(target);
  } catch (error) {
    if (errnoOf(error) !== "ENOENT") throw error;
    await mkdir(target, { recursive: true });
    return true;
  }
  if (names.length > 0 && !force) {
    throw new RociError("CONFLICT", `${target}: is not empty`, {
      subject: target,
      hint: "unpack into a new or empty directory, or pass --force to unpack over what is there",
    });
  }
  return names.length === 0;
}
