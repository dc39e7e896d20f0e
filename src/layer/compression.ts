/**
 * Layer compression. Readers trust the bytes, not the media type: the real format is sniffed from
 * magic numbers (gzip 1f 8b, zstd 28 b5 2f fd, anything else read as a plain tar), as
 * containers/image and rules_oci do. gzip streams may have several members (pigz, eStargz) and zstd
 * streams several and skippable frames. Writers emit gzip with a normalised header.
 */
import { Duplex, PassThrough, pipeline, Readable, Transform, type TransformCallback } from "node:stream";
import { createGunzip, createGzip, constants as zlibConstants } from "node:zlib";
import { Decompress } from "fzstd";
import { RociError } from "../errors.ts";
import { zstdCalls } from "../native/zstd.ts";
import { MediaType } from "../spec/media-types.ts";

export type Compression = "gzip" | "zstd" | "none";

/** zlib's default 16 KiB output chunks halve gunzip throughput; 64 KiB is the measured sweet spot. */
const zlibChunk = 64 * 1024;

export function sniffCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

/** The media type of a layer written with this compression, in the OCI or Docker family. */
export function layerMediaType(compression: Compression, family: "oci" | "docker" = "oci"): string {
  if (family === "docker") {
    return { gzip: MediaType.dockerLayerGzip, zstd: MediaType.dockerLayerZstd, none: MediaType.dockerLayer }[
      compression
    ];
  }
  return { gzip: MediaType.ociLayerGzip, zstd: MediaType.ociLayerZstd, none: MediaType.ociLayer }[
    compression
  ];
}

/** A zstd decoder as a Node transform (fzstd: pure JS, multi-frame and skippable-frame aware). */
function zstdDecompressor(): Transform {
  let decoder: Decompress;
  const transform = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        decoder.push(chunk);
        callback();
      } catch (error) {
        callback(corrupt("zstd", error));
      }
    },
    flush(callback: TransformCallback) {
      try {
        decoder.push(new Uint8Array(0), true);
        callback();
      } catch (error) {
        callback(corrupt("zstd", error));
      }
    },
  });
  decoder = new Decompress((data) => {
    transform.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  return transform;
}

function corrupt(kind: string, error: unknown): RociError {
  const reason = error instanceof Error ? error.message : String(error);
  return new RociError("CORRUPT_LAYER", `layer is not valid ${kind}: ${reason}`, { cause: error });
}

/**
 * A transform that sniffs its input's compression from the first bytes and decompresses
 * accordingly; `onDetected` hears what it found.
 */
export function decompressAuto(onDetected?: (kind: Compression) => void): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    const iterator = source[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let headLength = 0;
    while (headLength < 4) {
      const next = await iterator.next();
      if (next.done) break;
      head.push(next.value);
      headLength += next.value.length;
    }
    const kind = sniffCompression(Buffer.concat(head));
    onDetected?.(kind);
    const rest = Readable.from(
      (async function* () {
        yield* head;
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
      })(),
      { objectMode: false },
    );
    if (kind === "none") {
      yield* rest;
      return;
    }
    const decoder: Transform = kind === "gzip" ? createGunzip({ chunkSize: zlibChunk }) : zstdDecompressor();
    try {
      yield* pipeline(rest, decoder, () => {});
    } catch (error) {
      throw error instanceof RociError ? error : corrupt(kind, error);
    }
  });
}

export interface CompressOptions {
  /** gzip 1–9 (default 6), zstd 1–19 (default 3). */
  level?: number;
}

/** zstd through roci's addon over the system libzstd; a clear error where it was not built. */
function zstdCompressor(level: number): Transform {
  const native = zstdCalls();
  if ("error" in native) {
    throw new RociError(
      "UNSUPPORTED_COMPRESSION",
      `writing zstd layers needs roci's zstd addon: ${native.error}`,
      {
        hint: "install libzstd-dev and reinstall roci (npm ci builds the addon), or use --compression gzip",
      },
    );
  }
  const { calls } = native;
  const encoder = calls.createEncoder(level);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      callback(null, calls.encode(encoder, chunk, false));
    },
    flush(callback: TransformCallback) {
      callback(null, calls.encode(encoder, Buffer.alloc(0), true));
    },
  });
}

/**
 * A compressing transform. gzip gets a normalised header — no name, MTIME 0 (Node's default) and OS
 * byte 255 ("unknown", as Go writes it) — so the same bytes come out on every platform's zlib build.
 */
export function compressStream(kind: Compression, options: CompressOptions = {}): Duplex {
  if (kind === "none") return new PassThrough();
  if (kind === "zstd") return zstdCompressor(options.level ?? 3);
  const level = options.level ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9) {
    throw new RociError("USAGE", `gzip level ${level}: expected 1 to 9`, { subject: String(level) });
  }
  const gzip = createGzip({
    level,
    chunkSize: zlibChunk,
    strategy: zlibConstants.Z_DEFAULT_STRATEGY,
  });
  let offset = 0;
  const normaliseHeader = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const osByte = 9 - offset;
      if (osByte >= 0 && osByte < chunk.length) chunk[osByte] = 0xff;
      offset += chunk.length;
      callback(null, chunk);
    },
  });
  return Duplex.from({ writable: gzip, readable: pipeline(gzip, normaliseHeader, () => {}) });
}
