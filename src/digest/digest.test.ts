import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import { isDigest, parseDigest, requireVerifiable } from "./digest.ts";

const hex = (length: number) =>
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: length, maxLength: length });

describe("digest grammar", () => {
  it("accepts sha256 and sha512 in lower-case hex of the right length, as verifiable", () => {
    fc.assert(
      fc.property(hex(64), hex(128), (h256, h512) => {
        assert.equal(parseDigest(`sha256:${h256}`).verifiable, true);
        assert.equal(parseDigest(`sha512:${h512}`).verifiable, true);
      }),
    );
  });

  it("round-trips: algorithm and encoded part rebuild the digest", () => {
    const algorithm = fc.stringMatching(/^[a-z0-9]+([+._-][a-z0-9]+)*$/);
    const encoded = fc.stringMatching(/^[a-zA-Z0-9=_-]+$/);
    fc.assert(
      fc.property(algorithm, encoded, (alg, enc) => {
        fc.pre(alg !== "sha256" && alg !== "sha512");
        const parsed = parseDigest(`${alg}:${enc}`);
        assert.equal(`${parsed.algorithm}:${parsed.encoded}`, parsed.digest);
        assert.equal(parsed.verifiable, false);
      }),
    );
  });

  it("parses unknown algorithms but refuses to verify them or use them as a path", () => {
    const parsed = parseDigest("blake9:abc");
    assert.equal(parsed.verifiable, false);
    assert.throws(
      () => requireVerifiable("blake9:abc"),
      (error) => isRociError(error, "UNSUPPORTED_DIGEST"),
    );
  });

  for (const bad of [
    "sha256:../../etc/passwd",
    "sha256:..",
    "../sha256:abc",
    "sha256/abc",
    "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
    "sha256:abc",
    `sha512:${"a".repeat(64)}`,
    "sha256:",
    ":abc",
    "SHA256:abc",
    "",
  ]) {
    it(`rejects ${JSON.stringify(bad)} with INVALID_DIGEST naming the input`, () => {
      assert.throws(
        () => parseDigest(bad),
        (error) =>
          isRociError(error, "INVALID_DIGEST") && error.message.includes(JSON.stringify(bad).slice(1, -1)),
      );
      assert.equal(isDigest(bad), false);
    });
  }

  it("never lets a path separator or dot-dot through, whatever the input", () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        if (!isDigest(text)) return;
        assert.ok(!text.includes("/") && !text.includes(".."));
      }),
    );
  });
});
