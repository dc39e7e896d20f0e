import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import { decodePax, encodePax, paxHeaderName, paxText } from "./pax.ts";

const corrupt = (e: unknown) => isRociError(e, "CORRUPT_LAYER");

describe("PAX records: encoding", () => {
  it("writes the self-inclusive decimal length", () => {
    assert.equal(encodePax({ path: "a" }).toString(), "9 path=a\n");
    assert.equal(encodePax({ uid: "3000000" }).toString(), "15 uid=3000000\n");
  });

  it("counts the length's own digits across the 9/10, 99/100 and 999/1000 boundaries", () => {
    for (let n = 0; n < 1100; n++) {
      const value = "v".repeat(n);
      const data = encodePax({ k: value });
      const length = Number(data.toString("latin1", 0, data.indexOf(0x20)));
      assert.equal(length, data.length, `value of ${n} bytes`);
      assert.equal(decodePax(data).get("k")?.toString(), value);
    }
  });

  it("sorts records bytewise by key, whatever the insertion order (deterministic output)", () => {
    const a = encodePax(
      new Map([
        ["uid", "1"],
        ["path", "p"],
        ["SCHILY.xattr.user.b", "2"],
        ["SCHILY.xattr.user.a", "1"],
      ]),
    );
    const b = encodePax({ "SCHILY.xattr.user.a": "1", path: "p", "SCHILY.xattr.user.b": "2", uid: "1" });
    assert.deepEqual(a, b);
    assert.deepEqual([...decodePax(a).keys()], ["SCHILY.xattr.user.a", "SCHILY.xattr.user.b", "path", "uid"]);
  });

  it("refuses keys it could not write unambiguously, and NUL in names", () => {
    const cases: Array<Record<string, string>> = [
      { "": "x" },
      { "a=b": "x" },
      { "a\0": "x" },
      { path: "a\0b" },
    ];
    for (const records of cases) {
      assert.throws(
        () => encodePax(records),
        (e) => isRociError(e, "INTERNAL"),
      );
    }
  });
});

describe("PAX records: decoding", () => {
  it("round-trips any keys and values, binary xattr values included", () => {
    const key = fc
      .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
      .filter((k) => !k.includes("=") && !k.includes("\0"));
    fc.assert(
      fc.property(
        fc.dictionary(key, fc.uint8Array({ maxLength: 300 })),
        fc.dictionary(fc.stringMatching(/^[a-z.]{1,20}$/), fc.uint8Array({ maxLength: 50 })),
        (texts, xattrs) => {
          const records = new Map<string, Buffer>();
          for (const [k, v] of Object.entries(texts)) records.set(`T.${k}`, Buffer.from(v));
          for (const [k, v] of Object.entries(xattrs)) records.set(`SCHILY.xattr.${k}`, Buffer.from(v));
          const decoded = decodePax(encodePax(records));
          assert.equal(decoded.size, records.size);
          for (const [k, v] of records) assert.deepEqual(decoded.get(k), v);
        },
      ),
    );
  });

  it("reads what GNU tar writes: fractional times, atime and ctime", () => {
    const records = decodePax(
      Buffer.from("30 mtime=1700000000.123456789\n30 atime=1700000001.000000001\n20 ctime=1700000002\n"),
    );
    assert.equal(paxText(records.get("mtime")!), "1700000000.123456789");
    assert.equal(records.size, 3);
  });

  it("lets a later record for the same key win", () => {
    assert.equal(paxText(decodePax(Buffer.from("9 path=a\n9 path=b\n")).get("path")!), "b");
  });

  it("tolerates NUL padding after the last record", () => {
    const data = Buffer.concat([Buffer.from("9 path=a\n"), Buffer.alloc(40)]);
    assert.equal(paxText(decodePax(data).get("path")!), "a");
  });

  it("keeps '=' and newlines inside values (only the first '=' splits)", () => {
    const data = encodePax({ comment: "a=b\nc" });
    assert.equal(paxText(decodePax(data).get("comment")!), "a=b\nc");
  });

  it("rejects malformed records with CORRUPT_LAYER", () => {
    const bad = [
      "9 path=a", // no newline, and length beyond the data
      "11 path=a\n", // length one too long
      "8 path=a\n\n", // length one too short: the record would end in 'a'
      "x path=a\n",
      " 9path=a\n",
      "8 patha\n", // no '='
      "6 =ab\n", // empty key
      "3 a\n",
      "12 path=a\0b\n", // NUL in a path
      "9 path=a\n\0\0x", // garbage after padding
      "99999999999999999999 path=a\n",
    ];
    for (const text of bad)
      assert.throws(() => decodePax(Buffer.from(text), 1024), corrupt, JSON.stringify(text));
  });
});

describe("PAX extended header names", () => {
  it("are <dir>/PaxHeaders.0/<base>, a fixed function of the entry name", () => {
    assert.equal(paxHeaderName("usr/bin/env"), "usr/bin/PaxHeaders.0/env");
    assert.equal(paxHeaderName("env"), "PaxHeaders.0/env");
    assert.equal(paxHeaderName("usr/lib/"), "usr/lib/PaxHeaders.0");
    assert.equal(paxHeaderName("./a/./b"), "a/PaxHeaders.0/b");
  });

  it("are ASCII and at most 100 bytes, whatever the entry name", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", minLength: 1, maxLength: 300 }), (path) => {
        const name = paxHeaderName(path);
        assert.ok(Buffer.byteLength(name) <= 100);
        assert.ok(
          [...name].every((ch) => ch > "\0" && ch < "\u0080"),
          name,
        );
        assert.equal(paxHeaderName(path), name);
      }),
    );
    assert.equal(paxHeaderName("caf\u00e9/th\u00e9"), "caf/PaxHeaders.0/th");
  });
});
