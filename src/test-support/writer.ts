/**
 * A separate writer process for the concurrency and crash tests (`node dist/test-support/writer.js MODE …`),
 * using the library the CLI uses (LayoutStore). The lock kind follows the environment
 * (`ROCI_LOCK=exclusive-file` forces the fallback).
 *
 * - `tag <layout> <src-tag> <prefix> <n> [start-at]`: resolves `src-tag` once, waits until the epoch
 *   millisecond `start-at` (so that several writers start together), then calls `store.tag` `n`
 *   times, naming the image `<prefix>-0` … `<prefix>-<n-1>`, one index update each. Prints `done`.
 * - `push <layout> <seed> <size> <count> [start-at]`: builds `count` blobs of `size` bytes from the
 *   seeds `seed` … `seed+count-1` (the same bytes for the same seed and size, in every process), waits
 *   until `start-at`, pushes them one after the other and prints `<outcome> <digest>` for each.
 * - `crash <layout> <prefix>`: prints `ready`, then forever builds a random image (a layer of random
 *   bytes, 1 KiB to 64 KiB or, one time in three, 5 to 20 MiB; a config; a manifest), pushes its blobs
 *   and tags it `<prefix>-<k mod 3>` — until killed. Names move, so older images become unreferenced.
 *
 * Errors are printed to stderr as `error <code> <message>` with exit status 1.
 */
import { createHash, randomBytes, randomInt } from "node:crypto";
import { Readable } from "node:stream";
import type { Digest } from "../digest/digest.ts";
import { isRociError } from "../errors.ts";
import type { Descriptor } from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import { LayoutStore } from "../store/layout-store.ts";
import { parseEntryName } from "../store/naming.ts";

const MiB = 1024 * 1024;

async function waitUntil(startAt: number | undefined): Promise<void> {
  if (startAt === undefined || Number.isNaN(startAt)) return;
  const delay = startAt - Date.now();
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
}

function digestOf(bytes: Uint8Array): Digest {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}` as Digest;
}

/** `size` bytes from a xorshift32 generator seeded by `seed`: cheap, and equal in every process. */
function seededBytes(seed: number, size: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, size);
}

/** A stream of `bytes` in 1 MiB chunks, so a push writes (and can be killed) chunk by chunk. */
function streamOf(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; offset += MiB)
    chunks.push(bytes.subarray(offset, offset + MiB));
  return Readable.from(chunks.length > 0 ? chunks : [Buffer.alloc(0)], { objectMode: false });
}

async function pushBytes(store: LayoutStore, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  const descriptor: Descriptor = { mediaType, digest: digestOf(bytes), size: bytes.length };
  await store.push(descriptor, streamOf(bytes));
  return descriptor;
}

async function tagMode(layout: string, srcTag: string, prefix: string, n: number, startAt?: number) {
  const store = await LayoutStore.open(layout);
  const descriptor = await store.resolve({ tag: srcTag });
  await waitUntil(startAt);
  for (let i = 0; i < n; i++) await store.tag(descriptor, [parseEntryName(`${prefix}-${i}`)]);
  process.stdout.write("done\n");
}

async function pushMode(layout: string, seed: number, size: number, count: number, startAt?: number) {
  const store = await LayoutStore.open(layout);
  const blobs = Array.from({ length: count }, (_, i) => {
    const bytes = seededBytes(seed + i, size);
    const descriptor: Descriptor = { mediaType: MediaType.ociLayer, digest: digestOf(bytes), size };
    return { bytes, descriptor };
  });
  await waitUntil(startAt);
  for (const { bytes, descriptor } of blobs) {
    const outcome = await store.push(descriptor, streamOf(bytes));
    process.stdout.write(`${outcome} ${descriptor.digest}\n`);
  }
}

async function crashMode(layout: string, prefix: string): Promise<never> {
  const store = await LayoutStore.open(layout);
  process.stdout.write("ready\n");
  for (let k = 0; ; k++) {
    const size = randomInt(3) === 0 ? randomInt(5 * MiB, 20 * MiB + 1) : randomInt(1024, 64 * 1024 + 1);
    const layer = await pushBytes(store, randomBytes(size), MediaType.ociLayer);
    const config = {
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [layer.digest] },
      config: { Labels: { "crash.iteration": String(k), "crash.pid": String(process.pid) } },
    };
    const configDescriptor = await pushBytes(store, Buffer.from(JSON.stringify(config)), MediaType.ociConfig);
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: configDescriptor,
      layers: [layer],
    };
    const manifestDescriptor = await pushBytes(
      store,
      Buffer.from(JSON.stringify(manifest)),
      MediaType.ociManifest,
    );
    await store.tag(manifestDescriptor, [parseEntryName(`${prefix}-${k % 3}`)]);
  }
}

async function main(argv: string[]): Promise<void> {
  const [mode, layout, ...rest] = argv;
  if (mode === "tag" && layout !== undefined && (rest.length === 3 || rest.length === 4)) {
    return tagMode(
      layout,
      rest[0]!,
      rest[1]!,
      Number(rest[2]),
      rest[3] === undefined ? undefined : Number(rest[3]),
    );
  }
  if (mode === "push" && layout !== undefined && (rest.length === 3 || rest.length === 4)) {
    const startAt = rest[3] === undefined ? undefined : Number(rest[3]);
    return pushMode(layout, Number(rest[0]), Number(rest[1]), Number(rest[2]), startAt);
  }
  if (mode === "crash" && layout !== undefined && rest.length === 1) {
    await crashMode(layout, rest[0]!);
  }
  throw new Error(
    "usage: writer tag <layout> <src-tag> <prefix> <n> [start-at] | push <layout> <seed> <size> <count> [start-at] | crash <layout> <prefix>",
  );
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const code = isRociError(error) ? error.code : "ERROR";
  process.stderr.write(`error ${code} ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
