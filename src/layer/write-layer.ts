/**
 * Writes a layer in one streaming pass: entries → tar → (diff_id hashed) → compression → (digest
 * hashed, size counted) → sink. Same entries and options, same bytes (on one Node major version:
 * the deflate implementation ships with Node, and the diff_id is the identity that never drifts).
 */
import { createHash } from "node:crypto";
import { type Readable, Transform, type TransformCallback, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Digest } from "../digest/digest.ts";
import type { Descriptor } from "../spec/documents.ts";
import { TarWriter } from "../tar/writer.ts";
import { type Compression, compressStream, layerMediaType } from "./compression.ts";
import type { LayerEntry } from "./entry.ts";

export interface WriteLayerOptions {
  compression?: Compression;
  /** gzip level 1–9 (default 6). */
  level?: number;
  /** Media types of the OCI family (default) or the Docker one, to match a base image. */
  family?: "oci" | "docker";
}

export interface WrittenLayer {
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: Digest;
}

/** Counts and hashes what passes through. */
class Tap extends Transform {
  readonly hash = createHash("sha256");
  size = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }
  digest(): Digest {
    return `sha256:${this.hash.digest("hex")}` as Digest;
  }
}

/**
 * Gathers the tar's many small pieces (512-byte headers, small files) into large chunks: each
 * chunk written to zlib is a thread-pool round trip, and 150,000 tiny ones would dominate.
 */
class Coalesce extends Transform {
  readonly #pending: Buffer[] = [];
  #length = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#length += chunk.length;
    if (this.#length >= coalescedChunk) this.#emit();
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.#emit();
    callback();
  }
  #emit(): void {
    if (this.#length === 0) return;
    this.push(this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#length));
    this.#pending.length = 0;
    this.#length = 0;
  }
}

const coalescedChunk = 256 * 1024;

export async function writeLayer(
  entries: readonly LayerEntry[],
  sink: Writable,
  options: WriteLayerOptions = {},
): Promise<WrittenLayer> {
  const compression = options.compression ?? "gzip";
  const compressor = compressStream(compression, { level: options.level });
  const tar = new TarWriter();
  const uncompressed = new Tap();
  const compressed = new Tap();
  const written = pipeline(tar.readable, uncompressed, new Coalesce(), compressor, compressed, sink);
  const produced = (async () => {
    for (const entry of entries) {
      const body: Readable | Buffer | undefined =
        entry.type === "file" && entry.open ? await entry.open() : undefined;
      await tar.entry(
        {
          path: entry.type === "dir" ? `${entry.path}/` : entry.path,
          type: entry.type,
          mode: entry.mode,
          uid: entry.uid,
          gid: entry.gid,
          size: entry.size,
          mtime: entry.mtime,
          ...(entry.linkname !== undefined ? { linkname: entry.linkname } : {}),
          ...(entry.devmajor !== undefined
            ? { devmajor: entry.devmajor, devminor: entry.devminor ?? 0 }
            : {}),
          ...(entry.xattrs ? { xattrs: entry.xattrs } : {}),
        },
        body ?? (entry.type === "file" ? Buffer.alloc(0) : undefined),
      );
    }
    await tar.finish();
  })();
  produced.catch((error: unknown) => tar.destroy(error as Error));
  await Promise.all([written, produced]);
  return {
    descriptor: {
      mediaType: layerMediaType(compression, options.family),
      digest: compressed.digest(),
      size: compressed.size,
    },
    diffId: uncompressed.digest(),
  };
}
