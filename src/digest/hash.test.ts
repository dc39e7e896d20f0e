import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import { digestOf, hashFile, VerifyingStream } from "./hash.ts";

const verified = (bytes: Uint8Array, expected: { digest: string; size: number }, chunk = 7) => {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) chunks.push(Buffer.from(bytes.subarray(i, i + chunk)));
  return buffer(Readable.from(chunks).pipe(new VerifyingStream(expected, "test blob")));
};

describe("VerifyingStream", () => {
  it("passes bytes through unchanged when size and digest are right", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 2000 }),
        fc.integer({ min: 1, max: 300 }),
        async (bytes, chunk) => {
          const out = await verified(bytes, { digest: digestOf(bytes), size: bytes.length }, chunk);
          assert.deepEqual(new Uint8Array(out), bytes);
        },
      ),
    );
  });

  it("errors instead of ending when one byte differs (DIGEST_MISMATCH)", async () => {
    const good = Buffer.from("hello world");
    const bad = Buffer.from("hello World");
    await assert.rejects(verified(bad, { digest: digestOf(good), size: good.length }), (error) =>
      isRociError(error, "DIGEST_MISMATCH"),
    );
  });

  it("errors on a short stream (SIZE_MISMATCH)", async () => {
    const good = Buffer.from("hello world");
    await assert.rejects(
      verified(good.subarray(0, 5), { digest: digestOf(good), size: good.length }),
      (error) => isRociError(error, "SIZE_MISMATCH"),
    );
  });

  it("errors as soon as more bytes than promised arrive", async () => {
    const good = Buffer.from("hello");
    await assert.rejects(verified(Buffer.from("hello world"), { digest: digestOf(good), size: 5 }), (error) =>
      isRociError(error, "SIZE_MISMATCH"),
    );
  });

  it("refuses to start for an algorithm it cannot verify", () => {
    assert.throws(
      () => new VerifyingStream({ digest: "md5:abc", size: 1 }, "x"),
      (error) => isRociError(error, "UNSUPPORTED_DIGEST"),
    );
  });
});

describe("hashFile", () => {
  it("hashes files of any size, across chunk boundaries, like digestOf", async () => {
    const dir = await mkdtemp(join(tmpdir(), "roci-hash-"));
    try {
      for (const size of [0, 1, 4 * 1024 * 1024, 4 * 1024 * 1024 + 3, 9 * 1024 * 1024]) {
        const bytes = Buffer.alloc(size, 7);
        const path = join(dir, `f${size}`);
        await writeFile(path, bytes);
        assert.deepEqual(await hashFile(path, "sha256"), { digest: digestOf(bytes), size });
        assert.equal((await hashFile(path, "sha512")).digest, digestOf(bytes, "sha512"));
      }
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});
