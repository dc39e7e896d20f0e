/**
 * Reading a layer blob from any store: verified compressed bytes (the store's fetch), decompressed
 * by what the bytes are, hashed again as uncompressed tar for the diff_id, parsed entry by entry.
 * When anything fails, the error says what is really wrong: a blob whose bytes do not match its
 * digest is DIGEST_MISMATCH even when gzip or tar noticed first, anything else CORRUPT_LAYER.
 */
import { createHash } from "node:crypto";
import { Transform, type TransformCallback, Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { shortDigest } from "../digest/digest.ts";
import { checkContent } from "../digest/hash.ts";
import { isRociError, RociError } from "../errors.ts";
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
  const name = `layer ${shortDigest(layer.digest)}`;
  let compression: Compression | undefined;
  const tap = new DiffIdTap();
  const flowing = pipeline(
    await store.fetch(layer),
    decompressAuto((kind) => {
      compression = kind;
    }),
    tap,
  );
  // pipeline destroys every stream when one fails; the tap then fails the tar reader too.
  flowing.catch(() => {});
  const explain = (error: unknown) => explainFailure(error, store, layer, name);
  return {
    entries: (async function* () {
      try {
        yield* readTar(tap);
      } catch (error) {
        throw await explain(error);
      }
    })(),
    done: async () => {
      try {
        await Promise.all([flowing, finished(tap)]);
      } catch (error) {
        throw await explain(error);
      }
      if (diffId !== undefined) {
        checkContent(
          { digest: diffId, size: tap.bytes },
          { digest: `sha256:${tap.hash.digest("hex")}`, size: tap.bytes },
          `${name}: uncompressed content (diff_id ${shortDigest(diffId)})`,
        );
      }
      return { compression, bytes: tap.bytes };
    },
  };
}

/**
 * The error to report for a failed layer read. If gzip, zstd or tar failed before the digest
 * check could run, the blob is read once more, to the end, to tell a corrupt blob (its digest is
 * wrong: the real cause) from a well-transferred blob that is simply not a valid layer.
 */
async function explainFailure(
  error: unknown,
  store: Fetcher,
  layer: Descriptor,
  name: string,
): Promise<Error> {
  if (isRociError(error, "DIGEST_MISMATCH") || isRociError(error, "SIZE_MISMATCH")) return error;
  try {
    await pipeline(await store.fetch(layer), new Writable({ write: (_chunk, _encoding, next) => next() }));
  } catch (cause) {
    if (isRociError(cause, "DIGEST_MISMATCH") || isRociError(cause, "SIZE_MISMATCH")) return cause;
  }
  if (isRociError(error)) {
    return error.message.startsWith(name)
      ? error
      : new RociError(error.code, `${name}: ${error.message}`, { cause: error, subject: layer.digest });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new RociError("CORRUPT_LAYER", `${name}: not a valid layer (${reason})`, {
    cause: error,
    subject: layer.digest,
  });
}
