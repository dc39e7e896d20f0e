import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import {
  BLOCK_SIZE,
  decodeHeader,
  encodeHeader,
  entryType,
  type HeaderFields,
  headerPath,
  type RawHeader,
  splitUstarPath,
} from "./header.ts";

const utf8Len = (s: string) => Buffer.byteLength(s, "utf8");
/** Strings without NUL that fit `max` UTF-8 bytes, Unicode included. */
const fieldString = (max: number) =>
  fc
    .string({ unit: "grapheme", maxLength: max })
    .map((s) => s.replaceAll("\0", ""))
    .filter((s) => utf8Len(s) <= max);

const decoded = (block: Buffer, at = 0): RawHeader => {
  const h = decodeHeader(block, at);
  assert.notEqual(h, "zero");
  return h as RawHeader;
};

describe("tar header: encode then decode", () => {
  it("round-trips every field, with base-256 for numbers beyond the octal fields", () => {
    fc.assert(
      fc.property(
        fc.record({
          name: fieldString(100).filter((s) => s.length > 0),
          prefix: fieldString(155),
          mode: fc.integer({ min: 0, max: 0o7777777 }),
          uid: fc.oneof(fc.integer({ min: 0, max: 0o7777777 }), fc.maxSafeNat()),
          gid: fc.oneof(fc.integer({ min: 0, max: 0o7777777 }), fc.maxSafeNat()),
          // Sizes beyond 8 GiB are only claimed here; no body is written.
          size: fc.oneof(
            fc.integer({ min: 0, max: 2 ** 33 - 1 }),
            fc.integer({ min: 2 ** 33, max: 2 ** 50 }),
          ),
          mtime: fc.oneof(fc.integer({ min: 0, max: 2 ** 33 - 1 }), fc.maxSafeInteger()),
          typeflag: fc.constantFrom("0", "1", "2", "3", "4", "5", "6", "7", "x", "g", "L", "K", "Z"),
          linkname: fieldString(100),
          uname: fieldString(32),
          gname: fieldString(32),
          devmajor: fc.integer({ min: 0, max: 0o7777777 }),
          devminor: fc.integer({ min: 0, max: 0o7777777 }),
        }),
        (fields) => {
          const block = encodeHeader(fields);
          assert.equal(block.length, BLOCK_SIZE);
          assert.deepEqual(decoded(block), { ...fields, format: "ustar" });
        },
      ),
    );
  });

  it("writes canonical USTAR: zero-padded NUL-terminated octal, checksum as six digits, NUL, space", () => {
    const block = encodeHeader({
      name: "etc/hosts",
      mode: 0o644,
      size: 10,
      mtime: 1672560000,
      typeflag: "0",
    });
    const text = (start: number, length: number) => block.toString("latin1", start, start + length);
    assert.equal(text(100, 8), "0000644\0");
    assert.equal(text(108, 8), "0000000\0");
    assert.equal(text(124, 12), "00000000012\0");
    assert.equal(text(136, 12), "14354236600\0");
    assert.match(text(148, 8), /^[0-7]{6}\0 $/);
    assert.equal(text(257, 8), "ustar\x0000");
    // No device numbers for a regular file (RP-5).
    assert.equal(text(329, 16), "\0".repeat(16));
  });

  it("decodes negative base-256 mtimes and huge ids", () => {
    const h = decoded(
      encodeHeader({ name: "old", mtime: -86400, uid: 2 ** 40, gid: 2 ** 21, typeflag: "0" }),
    );
    assert.equal(h.mtime, -86400);
    assert.equal(h.uid, 2 ** 40);
    assert.equal(h.gid, 2 ** 21);
  });

  it("writes and reads the GNU magic (which has no prefix field)", () => {
    const h = decoded(encodeHeader({ name: "a", typeflag: "0", uname: "root", format: "gnu" }));
    assert.equal(h.format, "gnu");
    assert.equal(h.uname, "root");
    assert.equal(h.prefix, "");
  });

  it("refuses strings that do not fit their field (the caller must use PAX)", () => {
    assert.throws(
      () => encodeHeader({ name: "x".repeat(101), typeflag: "0" }),
      (e) => isRociError(e, "INTERNAL"),
    );
    assert.throws(
      () => encodeHeader({ name: "é".repeat(51), typeflag: "0" }),
      (e) => isRociError(e, "INTERNAL"),
    );
  });
});

describe("tar header: decoding what others write", () => {
  it("reports an all-zero block as the end-of-archive marker", () => {
    assert.equal(decodeHeader(Buffer.alloc(512), 0), "zero");
  });

  it("rejects a checksum mismatch with the header's byte offset", () => {
    const block = encodeHeader({ name: "a", typeflag: "0", size: 1 });
    block[0] = "b".charCodeAt(0);
    assert.throws(
      () => decodeHeader(block, 1536),
      (e) => isRociError(e, "CORRUPT_LAYER") && e.message === "tar header at byte 1536: checksum mismatch",
    );
  });

  it("rejects a checksum field that is not a number", () => {
    const block = encodeHeader({ name: "a", typeflag: "0" });
    block.write("zzzzzz", 148, "latin1");
    assert.throws(
      () => decodeHeader(block, 0),
      (e) => isRociError(e, "CORRUPT_LAYER") && e.message.includes("checksum mismatch"),
    );
  });

  it("accepts the signed checksum (old Sun and some GNU tars sum bytes as signed)", () => {
    const block = encodeHeader({ name: "\u00e9t\u00e9", typeflag: "0" });
    let signed = 0;
    for (let i = 0; i < 512; i++) {
      const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
      signed += c < 0x80 ? c : c - 256;
    }
    block.write(`${signed.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    assert.equal(decoded(block).name, "été");
  });

  const rechecksum = (block: Buffer): Buffer => {
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const c of block) sum += c;
    block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    return block;
  };

  it("tolerates octal fields padded with spaces and NULs on either side", () => {
    const block = encodeHeader({ name: "a", typeflag: "0" });
    block.write("  644 \0\0", 100, "latin1");
    block.write("\0\0\0\0\0\0\0\0\0\0\0\0", 124, "latin1");
    block.write(" 1750 \0     ", 136, "latin1");
    const h = decoded(rechecksum(block));
    assert.equal(h.mode, 0o644);
    assert.equal(h.size, 0);
    assert.equal(h.mtime, 0o1750);
  });

  it("rejects a numeric field with a non-octal digit", () => {
    const block = encodeHeader({ name: "a", typeflag: "0" });
    block.write("0000009\0", 100, "latin1");
    assert.throws(
      () => decodeHeader(rechecksum(block), 0),
      (e) => isRociError(e, "CORRUPT_LAYER") && e.message.includes("invalid mode field"),
    );
  });

  it("reads V7 headers (no magic): no uname, gname, devices or prefix", () => {
    const block = encodeHeader({ name: "v7file", typeflag: "\0", uname: "someone", prefix: "pre" });
    block.fill(0, 257, 265);
    const h = decoded(rechecksum(block));
    assert.equal(h.format, "v7");
    assert.equal(h.uname, "");
    assert.equal(headerPath(h), "v7file");
    assert.equal(entryType(h.typeflag), "file");
  });

  it("decodes names that are not UTF-8 as Latin-1, losing no byte", () => {
    const block = encodeHeader({ name: "x", typeflag: "0" });
    block.fill(0, 0, 100);
    Buffer.from([0x63, 0x61, 0x66, 0xe9]).copy(block, 0); // "café" in Latin-1
    const h = decoded(rechecksum(block));
    assert.equal(h.name, "caf\u00e9");
    assert.deepEqual(Buffer.from(h.name, "latin1"), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  });

  it("maps type flags to entry types (7 is a file; x, g, L, K and vendor types are not entries)", () => {
    const table: Array<[string, string]> = [
      ["0", "file"],
      ["\0", "file"],
      ["7", "file"],
      ["1", "link"],
      ["2", "symlink"],
      ["3", "char"],
      ["4", "block"],
      ["5", "dir"],
      ["6", "fifo"],
      ["x", "unknown"],
      ["D", "unknown"],
    ];
    for (const [flag, type] of table) assert.equal(entryType(flag), type, `flag ${JSON.stringify(flag)}`);
  });
});

describe("USTAR prefix/name split", () => {
  it("splits at the slash that leaves the longest prefix, like GNU tar and Go", () => {
    const dir = "d".repeat(60);
    const path = `${dir}/${dir}/${"f".repeat(50)}`;
    assert.deepEqual(splitUstarPath(path), { prefix: `${dir}/${dir}`, name: "f".repeat(50) });
  });

  it("refuses what cannot be split: no slash, name part > 100, prefix > 155, non-ASCII", () => {
    assert.equal(splitUstarPath("x".repeat(101)), undefined);
    assert.equal(splitUstarPath(`a/${"x".repeat(101)}`), undefined);
    assert.equal(splitUstarPath(`${"p".repeat(156)}/x`), undefined);
    assert.equal(splitUstarPath(`${"é".repeat(60)}/${"x".repeat(60)}`), undefined);
    assert.equal(splitUstarPath("short/path"), undefined);
  });

  it("never splits a directory's trailing slash off as an empty name", () => {
    const path = `${"a".repeat(120)}/`;
    assert.equal(splitUstarPath(path), undefined);
  });

  it("every split, when one exists, rejoins to the path and fits the fields", () => {
    const segment = fc.stringMatching(/^[a-z0-9._-]{1,70}$/);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), fc.boolean(), (parts, dir) => {
        const path = parts.join("/") + (dir ? "/" : "");
        const split = splitUstarPath(path);
        if (split === undefined) return;
        assert.equal(headerPath(split), path);
        assert.ok(split.name.length > 0 && split.name.length <= 100 && split.prefix.length <= 155);
        const block = encodeHeader({ ...split, typeflag: "5" } satisfies HeaderFields);
        assert.equal(headerPath(decoded(block)), path);
      }),
    );
  });
});
