import assert from "node:assert/strict";
import { mkdir, open, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isRociError, type RociErrorCode } from "../errors.ts";
import { encodeHeader } from "../tar/header.ts";
import { encodePax } from "../tar/pax.ts";
import { handTar, put, scratch, sh } from "../test-support/archives.ts";
import { indexTar, normaliseEntryName, type TarIndex } from "./tar-index.ts";

const rejectsWith =
  (code: RociErrorCode, ...mentions: string[]) =>
  (error: unknown): boolean => {
    assert.ok(isRociError(error), `expected a RociError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const text of mentions)
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`);
    return true;
  };

async function contentOf(index: TarIndex, name: string): Promise<string> {
  const { dataOffset, size } = index.lookup(name);
  const handle = await open(index.file, "r");
  try {
    const buffer = Buffer.alloc(size);
    await handle.read(buffer, 0, size, dataOffset);
    return buffer.toString("utf8");
  } finally {
    await handle.close();
  }
}

async function handArchive(
  entries: Parameters<typeof handTar>[0],
  options?: { trailer?: boolean },
): Promise<string> {
  return put(await scratch(), "hand.tar", handTar(entries, options));
}

describe("indexTar: names and offsets", () => {
  it("normalises names: leading ./ and /, doubled slashes, . components, trailing slash", () => {
    assert.deepEqual(normaliseEntryName("./blobs//sha256/./x/"), { key: "blobs/sha256/x", unsafe: false });
    assert.deepEqual(normaliseEntryName("/etc/passwd"), { key: "etc/passwd", unsafe: true });
    assert.deepEqual(normaliseEntryName("a/../../b"), { key: "a/../../b", unsafe: true });
    assert.deepEqual(normaliseEntryName("./"), { key: "", unsafe: false });
  });

  it("indexes GNU tar archives made with and without ./ prefixes, at the right offsets", async () => {
    const dir = await scratch();
    const tree = join(dir, "tree");
    await mkdir(join(tree, "blobs", "sha256"), { recursive: true });
    await writeFile(join(tree, "oci-layout"), "layout\n");
    await writeFile(join(tree, "blobs", "sha256", "one"), "x".repeat(1000));
    await writeFile(join(tree, "blobs", "sha256", "two"), "");
    await sh("tar", ["-C", tree, "-cf", join(dir, "dot.tar"), "."]);
    await sh("tar", ["-C", tree, "-cf", join(dir, "named.tar"), "oci-layout", "blobs"]);
    for (const name of ["dot.tar", "named.tar"]) {
      const index = await indexTar(join(dir, name));
      assert.equal(await contentOf(index, "oci-layout"), "layout\n");
      assert.equal(await contentOf(index, "./blobs/sha256/one"), "x".repeat(1000));
      assert.equal(index.lookup("blobs/sha256/two").size, 0);
      assert.equal(index.get("blobs")?.type, "dir");
      assert.deepEqual(index.list("blobs"), ["sha256/one", "sha256/two"]);
      assert.deepEqual(index.list("nothing-here"), []);
      assert.equal(index.find("blobs/sha256/three"), undefined);
      assert.throws(
        () => index.lookup("blobs/sha256/three"),
        rejectsWith("NOT_FOUND", name, "blobs/sha256/three"),
      );
      assert.throws(() => index.lookup("blobs"), rejectsWith("INVALID_LAYOUT", "a directory"));
    }
  });

  it("reads long names from PAX and GNU headers, as tar writes them", async () => {
    const dir = await scratch();
    const long = `${"d".repeat(120)}/${"f".repeat(120)}`;
    await mkdir(join(dir, "tree", "d".repeat(120)), { recursive: true });
    await writeFile(join(dir, "tree", long), "deep");
    await symlink(long, join(dir, "tree", "link"));
    for (const format of ["pax", "gnu"]) {
      const archive = join(dir, `${format}.tar`);
      await sh("tar", ["-C", join(dir, "tree"), `--format=${format}`, "-cf", archive, "."]);
      const index = await indexTar(archive);
      assert.equal(await contentOf(index, long), "deep", format);
      assert.equal(await contentOf(index, "link"), "deep", format);
    }
  });

  it("accepts archives without the end-of-archive trailer, and keeps the last of duplicate names", async () => {
    const archive = await handArchive(
      [
        { name: "a", data: "first" },
        { name: "./a", data: "second" },
      ],
      { trailer: false },
    );
    const index = await indexTar(archive);
    assert.equal(await contentOf(index, "a"), "second");
    assert.equal(index.entries.size, 1);
  });

  it("never reads bodies: a 16 GiB entry (sparse on disk) is jumped over in one step", async () => {
    const dir = await scratch();
    const archive = join(dir, "huge.tar");
    const huge = 16 * 1024 ** 3;
    const pax = encodePax({ size: String(huge) });
    const head = Buffer.concat([
      encodeHeader({ name: "PaxHeaders.0/huge", size: pax.length, typeflag: "x", mode: 0o644 }),
      pax,
      Buffer.alloc(512 - pax.length),
      encodeHeader({ name: "huge", size: 0, typeflag: "0", mode: 0o644 }),
    ]);
    const tail = handTar([{ name: "after", data: "after the big one" }]);
    await writeFile(archive, head);
    const handle = await open(archive, "r+");
    await handle.write(tail, 0, tail.length, head.length + huge);
    await handle.close();
    const started = performance.now();
    const index = await indexTar(archive);
    const elapsed = performance.now() - started;
    assert.equal(index.lookup("huge").size, huge);
    assert.equal(await contentOf(index, "after"), "after the big one");
    // Reading 16 GiB, even of holes, takes many seconds; jumping over it takes milliseconds.
    assert.ok(elapsed < 2000, `indexing took ${elapsed} ms`);
  });
});

describe("indexTar: links are resolved within the archive", () => {
  const entries = [
    { name: "store/", typeflag: "5" },
    { name: "store/blob", data: "the bytes" },
    { name: "blobs/sha256/relative", typeflag: "2", linkname: "../../store/blob" },
    { name: "blobs/sha256/absolute", typeflag: "2", linkname: "/store/blob" },
    { name: "blobs/sha256/chain", typeflag: "2", linkname: "relative" },
    { name: "blobs/sha256/hard", typeflag: "1", linkname: "store/blob" },
    { name: "blobs/sha256/hard-to-symlink", typeflag: "1", linkname: "blobs/sha256/relative" },
    { name: "blobs/sha256/symlink-to-hard", typeflag: "2", linkname: "hard" },
    { name: "cas", typeflag: "2", linkname: "store" },
    { name: "via-dir", typeflag: "2", linkname: "cas/blob" },
    { name: "escape", typeflag: "2", linkname: "../../../etc/passwd" },
    { name: "escape-later", typeflag: "2", linkname: "store/../../etc/passwd" },
    { name: "host-absolute", typeflag: "2", linkname: "/etc/passwd" },
    { name: "dangling", typeflag: "2", linkname: "store/nope" },
    { name: "hard-dangling", typeflag: "1", linkname: "store/nope" },
    { name: "hard-escape", typeflag: "1", linkname: "../outside" },
    { name: "hard-absolute", typeflag: "1", linkname: "/store/blob" },
    { name: "loop-a", typeflag: "2", linkname: "loop-b" },
    { name: "loop-b", typeflag: "2", linkname: "loop-a" },
    { name: "to-dir", typeflag: "2", linkname: "store" },
  ];

  it("follows relative, absolute (from the archive root), chained, hard and directory links", async () => {
    const index = await indexTar(await handArchive(entries));
    const blob = index.lookup("store/blob");
    for (const name of [
      "blobs/sha256/relative",
      "blobs/sha256/absolute",
      "blobs/sha256/chain",
      "blobs/sha256/hard",
      "blobs/sha256/hard-to-symlink",
      "blobs/sha256/symlink-to-hard",
      "cas/blob",
      "via-dir",
    ]) {
      const resolved = index.lookup(name);
      assert.equal(resolved.dataOffset, blob.dataOffset, name);
      assert.equal(resolved.size, 9, name);
      assert.ok(resolved.via.length > 0, name);
    }
    assert.equal(await contentOf(index, "via-dir"), "the bytes");
    assert.deepEqual(index.list("cas"), ["blob"]);
  });

  it("refuses links that leave the archive, and never reads the host's files", async () => {
    const archive = await handArchive(entries);
    const index = await indexTar(archive);
    assert.throws(
      () => index.lookup("escape"),
      rejectsWith("UNSAFE_PATH", archive, "escape", "outside the archive"),
    );
    assert.throws(() => index.lookup("escape-later"), rejectsWith("UNSAFE_PATH", archive, "escape-later"));
    assert.throws(() => index.lookup("hard-escape"), rejectsWith("UNSAFE_PATH", archive, "hard-escape"));
    assert.throws(() => index.lookup("hard-absolute"), rejectsWith("UNSAFE_PATH", archive, "hard-absolute"));
    // An absolute target is taken from the archive root: /etc/passwd is not in the archive.
    assert.throws(
      () => index.lookup("host-absolute"),
      rejectsWith("NOT_FOUND", archive, "host-absolute", "/etc/passwd"),
    );
  });

  it("reports dangling links, loops and links to directories, naming the archive and the entry", async () => {
    const archive = await handArchive(entries);
    const index = await indexTar(archive);
    assert.throws(
      () => index.lookup("dangling"),
      rejectsWith("NOT_FOUND", archive, "dangling", "store/nope"),
    );
    assert.throws(() => index.find("dangling"), rejectsWith("NOT_FOUND", archive, "dangling"));
    assert.throws(() => index.lookup("hard-dangling"), rejectsWith("NOT_FOUND", archive, "hard-dangling"));
    assert.throws(() => index.lookup("loop-a"), rejectsWith("CORRUPT_ARCHIVE", archive, "loop-a", "40"));
    assert.throws(
      () => index.lookup("to-dir"),
      rejectsWith("INVALID_LAYOUT", archive, "to-dir", "directory"),
    );
  });

  it("records absolute and .. names as unsafe: looking one up is UNSAFE_PATH", async () => {
    const archive = await handArchive([
      { name: "../evil", data: "x" },
      { name: "/abs/file", data: "y" },
      { name: "ok/../../up", data: "z" },
      { name: "fine", data: "ok" },
    ]);
    const index = await indexTar(archive);
    for (const name of ["../evil", "abs/file", "/abs/file", "ok/../../up"]) {
      assert.throws(() => index.lookup(name), rejectsWith("UNSAFE_PATH", archive, name.replace(/^\//, "")));
    }
    assert.equal(await contentOf(index, "fine"), "ok");
    assert.deepEqual(index.list(""), ["fine"]);
  });
});

describe("indexTar: damaged archives", () => {
  it("reports a body that runs past the end of the file, with the byte and the entry", async () => {
    const dir = await scratch();
    const whole = handTar([
      { name: "first", data: "a".repeat(600) },
      { name: "second", data: "b".repeat(2000) },
    ]);
    const archive = await put(dir, "cut-body.tar", whole.subarray(0, 2048 + 1000));
    await assert.rejects(
      indexTar(archive),
      rejectsWith("CORRUPT_ARCHIVE", archive, "truncated at byte 3048", "second"),
    );
  });

  it("reports a header cut short", async () => {
    const dir = await scratch();
    const whole = handTar([{ name: "first", data: "a" }]);
    const archive = await put(
      dir,
      "cut-header.tar",
      Buffer.concat([whole.subarray(0, 1024), whole.subarray(0, 100)]),
    );
    await assert.rejects(
      indexTar(archive),
      rejectsWith("CORRUPT_ARCHIVE", archive, "truncated at byte 1124"),
    );
  });

  it("reports a bad checksum and a file that is not a tar at all, naming the archive", async () => {
    const dir = await scratch();
    const bad = handTar([{ name: "x", data: "y" }]);
    bad[0] = 0x41;
    const archive = await put(dir, "bad.tar", bad);
    await assert.rejects(indexTar(archive), rejectsWith("CORRUPT_ARCHIVE", archive, "checksum"));
    const text = await put(dir, "text.tar", "this is not a tar archive\n".repeat(40));
    await assert.rejects(indexTar(text), rejectsWith("CORRUPT_ARCHIVE", text));
  });

  it("reads an empty file and one of zero blocks as empty archives", async () => {
    const dir = await scratch();
    for (const [name, bytes] of [
      ["empty.tar", Buffer.alloc(0)],
      ["zeros.tar", Buffer.alloc(10240)],
    ] as const) {
      const index = await indexTar(await put(dir, name, bytes));
      assert.equal(index.entries.size, 0);
    }
  });

  it("leaves the archive as it found it", async () => {
    const dir = await scratch();
    const archive = await put(dir, "a.tar", handTar([{ name: "x", data: "y" }]));
    const before = await readFile(archive);
    await indexTar(archive);
    assert.deepEqual(await readFile(archive), before);
  });
});
