/**
 * Reading a layer blob from any store: verified compressed bytes (the store's fetch), decompressed
 * by what the bytes are, hashed again as uncompressed tar for the diff_id, parsed entry by entry.
 */
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { finished } from "node:stream/promises";
import { shortDigest } from "../digest/digest.ts";
import { checkContent } from "../digest/hash.ts";
import type { Descriptor } from "../spec/documents.ts";
import type { Fetcher } from "../store/store.ts";
import { readTar, type TarEntry } from "../tar/reader.ts";
import { type Compression, decompressAuto } from "./compression.ts";

export interface LayerReading {
  entries: AsyncIterable<TarEntry>;
  /** Resolves once every byte was read: the blob's digest and the diff_id both checked (or rejects). */
  done: () => Promise<{ compression: Compression | undefined; bytes: number }>;
}

/**
 * Decompressed bytes held ahead of the parser: enough that gunzip, on the thread pool, keeps
 * working while the main thread writes files, instead of the two taking turns.
 */
const readAhead = 4 * 1024 * 1024;

/** Hashes the uncompressed tar on its way to the parser. */
class DiffIdTap extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor() {
    super({ readableHighWaterMark: readAhead });
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/**
 * Opens a layer for reading. `diffId`, when given, is checked after the last byte: a mismatch
 * fails `done()` with DIGEST_MISMATCH. Consume `entries` fully, then await `done()`.
 */
export async function readLayer(store: Fetcher, layer: Descriptor, diffId?: string): Promise<LayerReading> {
  let compression: Compression | undefined;
  const compressed = await store.fetch(layer);
  const decompressed = compressed.pipe(decompressAuto((kind) => (compression = kind)));
  compressed.on("error", (error) => decompressed.destroy(error));
  const tap = new DiffIdTap();
  decompressed.on("error", (error) => tap.destroy(error));
  decompressed.pipe(tap);
  return {
    entries: readTar(tap),
    done: async () => {
      await finished(tap);
      if (diffId !== undefined) {
        checkContent(
          { digest: diffId, size: tap.bytes },
          { digest: `sha256:${tap.hash.digest("hex")}`, size: tap.bytes },
          `layer ${shortDigest(layer.digest)}: uncompressed content (diff_id ${shortDigest(diffId)})`,
        );
      }
      return { compression, bytes: tap.bytes };
    },
  };
}
