/**
 * Hashing and verification of content: the only place roci decides that bytes are trusted.
 * Everything is streamed; nothing holds a whole blob in memory.
 */
import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { Transform, type TransformCallback } from "node:stream";
import { RociError } from "../errors.ts";
import { type Digest, requireVerifiable, type VerifiableAlgorithm } from "./digest.ts";

/** The digest of bytes held in memory. */
export function digestOf(bytes: Uint8Array, algorithm: VerifiableAlgorithm = "sha256"): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}` as Digest;
}

export interface Expected {
  digest: string;
  size: number;
}

/** Throws SIZE_MISMATCH when `size` is not what `expected` promised (checked before any hashing). */
export function checkSize(expected: Expected, size: number, where: string): void {
  if (size !== expected.size) {
    throw new RociError(
      "SIZE_MISMATCH",
      `${where}: size is ${size} bytes, descriptor says ${expected.size}`,
      {
        subject: expected.digest,
        hint: "the blob is truncated or corrupt; fetch it again from its source",
      },
    );
  }
}

/** Throws SIZE_MISMATCH or DIGEST_MISMATCH when `actual` is not what `expected` promised. */
export function checkContent(
  expected: Expected,
  actual: { digest: string; size: number },
  where: string,
): void {
  checkSize(expected, actual.size, where);
  if (actual.digest !== expected.digest) {
    throw new RociError("DIGEST_MISMATCH", `${where}: content hashes to ${actual.digest}`, {
      subject: expected.digest,
      hint: "the blob is corrupt; fetch it again from its source",
    });
  }
}

/** Verifies bytes held in memory against a descriptor. */
export function verifyBytes(bytes: Uint8Array, expected: Expected, where: string): void {
  const { algorithm } = requireVerifiable(expected.digest);
  checkContent(expected, { digest: digestOf(bytes, algorithm), size: bytes.byteLength }, where);
}

/**
 * A pass-through stream that hashes what flows through it and fails closed: it errors instead of
 * ending when the size or digest is wrong, and errors as soon as more bytes than promised arrive.
 */
export class VerifyingStream extends Transform {
  readonly #expected: Expected;
  readonly #where: string;
  readonly #hash: Hash;
  readonly #algorithm: VerifiableAlgorithm;
  #size = 0;

  constructor(expected: Expected, where: string) {
    super();
    this.#algorithm = requireVerifiable(expected.digest).algorithm;
    this.#expected = expected;
    this.#where = where;
    this.#hash = createHash(this.#algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.byteLength;
    if (this.#size > this.#expected.size) {
      callback(
        new RociError(
          "SIZE_MISMATCH",
          `${this.#where}: more than the ${this.#expected.size} bytes the descriptor says`,
          { subject: this.#expected.digest },
        ),
      );
      return;
    }
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      const digest = `${this.#algorithm}:${this.#hash.digest("hex")}`;
      checkContent(this.#expected, { digest, size: this.#size }, this.#where);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/** Read size for hashing files: large reads let OpenSSL hash at its full rate. */
const fileChunk = 4 * 1024 * 1024;

/**
 * Hashes a file, or a byte range of one (a blob inside an archive), without holding it in memory,
 * overlapping the next read with hashing the current chunk (two buffers). Reads at most `length`
 * bytes from `offset`; past the end of the range it stops, so a blob claiming a small size
 * cannot make roci hash gigabytes.
 */
export async function hashFile(
  path: string,
  algorithm: VerifiableAlgorithm,
  range: { offset?: number; length?: number } = {},
): Promise<{ digest: Digest; size: number }> {
  const handle = await open(path, "r");
  try {
    const hash = createHash(algorithm);
    const buffers = [Buffer.allocUnsafe(fileChunk), Buffer.allocUnsafe(fileChunk)];
    const length = range.length ?? Number.POSITIVE_INFINITY;
    let position = range.offset ?? 0;
    let size = 0;
    let turn = 0;
    const next = () => handle.read(buffers[turn]!, 0, Math.min(fileChunk, length - size), position);
    let pending = next();
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      size += bytesRead;
      position += bytesRead;
      const done = size >= length;
      turn ^= 1;
      if (!done) pending = next();
      hash.update(buffer.subarray(0, bytesRead));
      if (done) break;
    }
    return { digest: `${algorithm}:${hash.digest("hex")}` as Digest, size };
  } finally {
    await handle.close();
  }
}

/**
 * Copies a file (or a byte range of one) while hashing it, in one pass: the next chunk is read while the current one is
 * hashed and earlier ones are written (rotating buffers), and the copy fails — leaving the caller to remove
 * `target` — as soon as the source is longer than promised, or at the end if size or digest differ.
 */
export async function copyFileVerified(
  source: string,
  target: string,
  expected: Expected,
  where: string,
  range: { offset: number; length: number } = { offset: 0, length: expected.size + 1 },
): Promise<void> {
  const { algorithm } = requireVerifiable(expected.digest);
  const input = await open(source, "r");
  try {
    const output = await open(target, "wx", 0o644);
    try {
      const hash = createHash(algorithm);
      // Four buffers: one being read, one being hashed, and up to two writes still in flight.
      // Writes are positional, so they may finish in any order.
      const buffers = [0, 1, 2, 3].map(() => Buffer.allocUnsafe(fileChunk));
      const writes: Array<Promise<unknown> | undefined> = buffers.map(() => undefined);
      let size = 0;
      let turn = 0;
      // Never past the range: in an archive the next entry's bytes follow. For a whole file the
      // default range is one byte longer than promised, which is enough to tell a longer file.
      const want = (done: number) => Math.max(0, Math.min(fileChunk, range.length - done));
      let reading = input.read(buffers[0]!, 0, want(0), range.offset);
      for (;;) {
        const { bytesRead, buffer } = await reading;
        if (bytesRead === 0) break;
        const position = size;
        size += bytesRead;
        if (size > expected.size) break;
        const next = (turn + 1) % buffers.length;
        await writes[next]; // that buffer's last write must be done before it is read into again
        reading = input.read(buffers[next]!, 0, want(size), range.offset + size);
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        writes[turn] = output.write(chunk, 0, bytesRead, position);
        turn = next;
      }
      await Promise.all(writes);
      checkContent(expected, { digest: `${algorithm}:${hash.digest("hex")}`, size }, where);
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}
