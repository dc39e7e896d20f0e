import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { chmod, chown, link, mkdir, mkdtemp, open, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import { decodeHeader, encodeHeader, type HeaderFields, type RawHeader } from "./header.ts";
import { encodePax } from "./pax.ts";
import { readTar, type TarEntry, type TarHeader } from "./reader.ts";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

interface Read {
  header: TarHeader;
  offset: number;
  dataOffset: number;
  body: Buffer;
}

async function readAll(source: Readable | AsyncIterable<Buffer>, options = {}): Promise<Read[]> {
  const out: Read[] = [];
  for await (const entry of readTar(source, options)) {
    out.push({
      header: entry.header,
      offset: entry.offset,
      dataOffset: entry.dataOffset,
      body: await buffer(entry.body),
    });
  }
  return out;
}

/** The bytes as a stream of chunks of the given sizes (cycled), like a socket or gunzip would deliver. */
function chunked(bytes: Buffer, sizes: number[] = [65536]): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]!);
    chunks.push(bytes.subarray(i, i + n));
    i += n;
  }
  return Readable.from(chunks);
}

const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
const file = (name: string, body: string | Buffer, extra: Partial<HeaderFields> = {}) => {
  const data = Buffer.from(body);
  return Buffer.concat([
    encodeHeader({ name, size: data.length, typeflag: "0", mode: 0o644, ...extra }),
    pad(data),
  ]);
};
const meta = (typeflag: string, data: Buffer, name = "././@LongLink") =>
  Buffer.concat([encodeHeader({ name, size: data.length, typeflag }), pad(data)]);
const TRAILER = Buffer.alloc(1024);

const corrupt = (pattern?: RegExp) => (e: unknown) =>
  isRociError(e, "CORRUPT_LAYER") && (pattern === undefined || pattern.test(e.message));

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "roci-tar-reader-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Archives made by GNU tar and Python's tarfile

const MTIME = 1600000000;
const LONG_DIR = `long-${"d".repeat(120)}`;
const LONG_FILE = `${LONG_DIR}/${"f".repeat(150)}`;
const LONG_TARGET = `../${"t".repeat(140)}/target`;
const UNICODE = "\u00fcn\u00efc\u00f8d\u00e9-\u0444\u0430\u0439\u043b-\u{1f40b}.txt";

interface Expected {
  path: string;
  type: TarHeader["type"];
  mode: number;
  content?: Buffer;
  linkname?: string;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
}

/** Builds a tree for GNU tar; `full` adds what USTAR cannot hold (long names, big ids). */
async function makeTree(root: string, full: boolean): Promise<Expected[]> {
  await mkdir(root);
  const expected: Expected[] = [];
  const addFile = async (path: string, content: Buffer, mode = 0o644) => {
    await writeFile(join(root, path), content);
    await chmod(join(root, path), mode);
    expected.push({ path, type: "file", mode, content });
  };
  const addDir = async (path: string) => {
    await mkdir(join(root, path));
    await chmod(join(root, path), 0o755);
    expected.push({ path: `${path}/`, type: "dir", mode: 0o755 });
  };
  await addFile("a-file", Buffer.from("hello\n"));
  await link(join(root, "a-file"), join(root, "z-hard"));
  expected.push({ path: "z-hard", type: "link", mode: 0o644, linkname: "a-file" });
  await addFile("empty", Buffer.alloc(0));
  await addFile("aligned", Buffer.alloc(1024, "a"));
  await addFile("odd", Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256)));
  await addFile("exec.sh", Buffer.from("#!/bin/sh\n"), 0o755);
  await addFile("setuid", Buffer.from("x"), 0o4755);
  await addDir("dir");
  await addFile("dir/nested.txt", Buffer.from("nested"));
  await addDir("dir/sub");
  await symlink("a-file", join(root, "sym"));
  expected.push({ path: "sym", type: "symlink", mode: 0o777, linkname: "a-file" });
  await symlink("/etc/passwd", join(root, "abs-sym"));
  expected.push({ path: "abs-sym", type: "symlink", mode: 0o777, linkname: "/etc/passwd" });
  await run("mkfifo", ["-m", "0600", join(root, "fifo")]);
  expected.push({ path: "fifo", type: "fifo", mode: 0o600 });
  await addFile("owned", Buffer.from("o"));
  await chown(join(root, "owned"), 1234, 5678);
  Object.assign(expected.at(-1)!, { uid: 1234, gid: 5678 });
  if (isRoot) {
    await run("mknod", ["-m", "0666", join(root, "chardev"), "c", "1", "3"]);
    expected.push({ path: "chardev", type: "char", mode: 0o666, devmajor: 1, devminor: 3 });
    await run("mknod", ["-m", "0660", join(root, "blockdev"), "b", "7", "200"]);
    expected.push({ path: "blockdev", type: "block", mode: 0o660, devmajor: 7, devminor: 200 });
  }
  if (full) {
    await addDir(LONG_DIR);
    await addFile(LONG_FILE, Buffer.from("deep"));
    await addFile(UNICODE, Buffer.from("unicode"));
    await symlink(LONG_TARGET, join(root, "long-sym"));
    expected.push({ path: "long-sym", type: "symlink", mode: 0o777, linkname: LONG_TARGET });
    await addFile("big-ids", Buffer.from("b"));
    await chown(join(root, "big-ids"), 3000000, 4000000);
    Object.assign(expected.at(-1)!, { uid: 3000000, gid: 4000000 });
  }
  return expected;
}

let made = 0;
async function gnuTar(
  format: "gnu" | "pax" | "ustar",
  full: boolean,
): Promise<{ tar: string; expected: Expected[] }> {
  made++;
  const root = join(work, `tree-${format}-${made}`);
  const expected = await makeTree(root, full);
  const tar = join(work, `${format}-${made}.tar`);
  const names = [...new Set(expected.map((e) => e.path.split("/")[0]!))];
  await run("tar", [
    `--format=${format}`,
    "--sort=name",
    `--mtime=@${MTIME}`,
    "--numeric-owner",
    "-C",
    root,
    "-cf",
    tar,
    ...names,
  ]);
  return { tar, expected };
}

function assertMatches(entries: Read[], expected: Expected[]): void {
  assert.deepEqual(entries.map((e) => e.header.path).sort(), expected.map((e) => e.path).sort());
  for (const want of expected) {
    const got = entries.find((e) => e.header.path === want.path)!;
    const h = got.header;
    assert.equal(h.type, want.type, want.path);
    assert.equal(h.mode, want.mode, `${want.path} mode`);
    assert.equal(Math.floor(h.mtime), MTIME, `${want.path} mtime`);
    assert.equal(h.uid, want.uid ?? 0, `${want.path} uid`);
    assert.equal(h.gid, want.gid ?? 0, `${want.path} gid`);
    assert.equal(h.linkname, want.linkname ?? "", `${want.path} linkname`);
    assert.deepEqual(got.body, want.content ?? Buffer.alloc(0), `${want.path} body`);
    assert.equal(h.size, got.body.length);
    if (want.devmajor !== undefined) {
      assert.equal(h.devmajor, want.devmajor);
      assert.equal(h.devminor, want.devminor);
    }
  }
}

describe("readTar: archives written by GNU tar", () => {
  for (const format of ["gnu", "pax", "ustar"] as const) {
    const full = format !== "ustar";
    it(`reads --format=${format}${full ? " (long names, long link targets, Unicode, ids ≥ 2^21)" : ""}, hard links, symlinks, fifos${isRoot ? ", devices" : ""}, empty files and dirs`, async () => {
      const { tar, expected } = await gnuTar(format, full);
      assertMatches(await readAll(createReadStream(tar)), expected);
      // The same archive delivered in odd-sized pieces reads the same.
      const bytes = await readFile(tar);
      assertMatches(await readAll(chunked(bytes, [1, 511, 513, 7, 4096])), expected);
    });
  }

  it("reports offsets that point at header blocks, and bodies found by seeking to dataOffset", async () => {
    const { tar } = await gnuTar("pax", true);
    const handle = await open(tar);
    try {
      for (const entry of await readAll(createReadStream(tar))) {
        const block = Buffer.alloc(512);
        await handle.read(block, 0, 512, entry.offset);
        const raw = decodeHeader(block, entry.offset) as RawHeader;
        assert.notEqual(raw, "zero");
        assert.ok(!["x", "g", "L", "K"].includes(raw.typeflag), "offset is the entry's own header");
        assert.equal(entry.dataOffset, entry.offset + 512);
        const body = Buffer.alloc(entry.header.size);
        await handle.read(body, 0, body.length, entry.dataOffset);
        assert.deepEqual(body, entry.body, entry.header.path);
      }
    } finally {
      await handle.close();
    }
  });

  it("refuses sparse files, from --format=pax (GNU.sparse.*) and --format=gnu (type S)", async () => {
    const root = join(work, "sparse");
    await mkdir(root);
    const handle = await open(join(root, "holes"), "w");
    await handle.write(Buffer.from("data"), 0, 4, 10 * 1024 * 1024);
    await handle.close();
    for (const format of ["pax", "gnu"]) {
      const tar = join(work, `sparse-${format}.tar`);
      await run("tar", ["--sparse", `--format=${format}`, "-C", root, "-cf", tar, "holes"]);
      await assert.rejects(readAll(createReadStream(tar)), corrupt(/sparse files are not supported/));
    }
  });
});

describe("readTar: archives written by Python's tarfile", () => {
  it("applies xattrs (SCHILY.xattr.*), global PAX headers, and GNU long names", async () => {
    const script = String.raw`
import io, sys, tarfile
def add(t, name, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1600000000
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data))
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT, pax_headers={"uname": "globaluser", "comment": "made by python"}) as t:
    add(t, "xattrs", b"x", pax_headers={"SCHILY.xattr.user.x": "v\u00e9", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\udcff"})
    add(t, "local-uname", pax_headers={"uname": "local"})
    add(t, "p/" + "q" * 300, b"long")
    add(t, "frac", pax_headers={"mtime": "1600000000.5"})
with tarfile.open(sys.argv[2], "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "g/" + "n" * 300, b"gnu long")
    add(t, "ln", type=tarfile.SYMTYPE, linkname="l" * 200)
`;
    const pax = join(work, "py-pax.tar");
    const gnu = join(work, "py-gnu.tar");
    await run("python3", ["-c", script, pax, gnu]);

    const [xattrs, local, long, frac] = await readAll(createReadStream(pax));
    assert.equal(xattrs!.header.path, "xattrs");
    assert.deepEqual(xattrs!.header.xattrs, {
      "user.x": Buffer.from("v\u00e9"),
      "security.capability": Buffer.from([1, 0, 0, 2, 0xff]),
    });
    assert.equal(xattrs!.header.uname, "globaluser");
    assert.equal(xattrs!.header.pax.comment, "made by python");
    assert.equal(xattrs!.header.pax["SCHILY.xattr.user.x"], undefined);
    assert.equal(local!.header.uname, "local");
    assert.equal(long!.header.path, `p/${"q".repeat(300)}`);
    assert.deepEqual(long!.body, Buffer.from("long"));
    assert.equal(long!.header.uname, "globaluser");
    assert.equal(frac!.header.mtime, 1600000000.5);

    const [g, ln] = await readAll(createReadStream(gnu));
    assert.equal(g!.header.path, `g/${"n".repeat(300)}`);
    assert.deepEqual(g!.body, Buffer.from("gnu long"));
    assert.equal(ln!.header.type, "symlink");
    assert.equal(ln!.header.linkname, "l".repeat(200));
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made archives for the edge cases

describe("readTar: metadata precedence", () => {
  it("PAX path wins over a GNU long name, which wins over prefix/name", async () => {
    const tar = Buffer.concat([
      meta("L", Buffer.from("gnu-name\0")),
      meta("x", encodePax({ path: "pax-name" }), "PaxHeaders.0/x"),
      file("x", "1", { prefix: "pre" }),
      meta("L", Buffer.from("gnu-only\0")),
      meta("K", Buffer.from("gnu-target\0")),
      encodeHeader({ name: "y", typeflag: "2", linkname: "short", prefix: "pre" }),
      file("z", "3", { prefix: "pre" }),
      TRAILER,
    ]);
    const entries = await readAll(chunked(tar));
    assert.deepEqual(
      entries.map((e) => [e.header.path, e.header.linkname]),
      [
        ["pax-name", ""],
        ["gnu-only", "gnu-target"],
        ["pre/z", ""],
      ],
    );
    assert.deepEqual(entries[0]!.header.pax, { path: "pax-name" });
  });

  it("applies global records to every later entry; local records override; an empty local value cancels", async () => {
    const tar = Buffer.concat([
      meta("g", encodePax({ uname: "g-user", gid: "77", comment: "c" }), "GlobalHead.0.0"),
      file("a", "", { uname: "field" }),
      meta("x", encodePax({ uname: "x-user" })),
      file("b", ""),
      meta("x", encodePax({ uname: "" })),
      file("c", "", { uname: "field" }),
      meta("g", encodePax({ gid: "" })),
      file("d", "", { gid: 5 }),
      TRAILER,
    ]);
    const entries = (await readAll(chunked(tar))).map((e) => e.header);
    assert.deepEqual(
      entries.map((h) => [h.path, h.uname, h.gid]),
      [
        ["a", "g-user", 77],
        ["b", "x-user", 77],
        ["c", "field", 77],
        ["d", "g-user", 5],
      ],
    );
    assert.deepEqual(entries[1]!.pax, { uname: "x-user", gid: "77", comment: "c" });
  });

  it("reads PAX size, uid, gid, fractional and negative mtime, and base-256 fields", async () => {
    const tar = Buffer.concat([
      meta("x", encodePax({ size: "5", uid: "9007199254740991", mtime: "-1.25" })),
      encodeHeader({ name: "p", typeflag: "0", size: 0 }),
      pad(Buffer.from("12345")),
      encodeHeader({ name: "b256", typeflag: "0", uid: 2 ** 40, mtime: -100, format: "gnu" }),
      TRAILER,
    ]);
    const [p, b] = await readAll(chunked(tar));
    assert.equal(p!.header.size, 5);
    assert.deepEqual(p!.body, Buffer.from("12345"));
    assert.equal(p!.header.uid, Number.MAX_SAFE_INTEGER);
    assert.equal(p!.header.mtime, -1.25);
    assert.equal(b!.header.uid, 2 ** 40);
    assert.equal(b!.header.mtime, -100);
  });

  it("rejects invalid PAX numbers", async () => {
    const cases: Array<Record<string, string>> = [
      { size: "-1" },
      { uid: "1e3" },
      { mtime: "soon" },
      { size: "99999999999999999" },
    ];
    for (const records of cases) {
      const tar = Buffer.concat([meta("x", encodePax(records)), file("a", ""), TRAILER]);
      await assert.rejects(readAll(chunked(tar)), corrupt(/PAX/), JSON.stringify(records));
    }
  });

  it("treats an old-style file whose name ends in a slash as a directory, and 7 as a file", async () => {
    const tar = Buffer.concat([
      encodeHeader({ name: "d/", typeflag: "\0", mode: 0o40755 }),
      file("c", "contig", { typeflag: "7" }),
      TRAILER,
    ]);
    const [d, c] = await readAll(chunked(tar));
    assert.equal(d!.header.type, "dir");
    assert.equal(d!.header.mode, 0o755);
    assert.equal(c!.header.type, "file");
    assert.deepEqual(c!.body, Buffer.from("contig"));
  });

  it("reads no body for header-only types even if their size field says otherwise (as Go does)", async () => {
    const tar = Buffer.concat([
      encodeHeader({ name: "h", typeflag: "1", linkname: "a", size: 600 }),
      encodeHeader({ name: "d", typeflag: "5", size: 1 }),
      file("f", "after"),
      TRAILER,
    ]);
    const entries = await readAll(chunked(tar));
    assert.deepEqual(
      entries.map((e) => [e.header.path, e.header.size]),
      [
        ["h", 0],
        ["d", 0],
        ["f", 5],
      ],
    );
  });

  it("carries unknown type flags with their bodies", async () => {
    const tar = Buffer.concat([file("v", "vendor data", { typeflag: "Z" }), file("f", "x"), TRAILER]);
    const [v, f] = await readAll(chunked(tar));
    assert.equal(v!.header.type, "unknown");
    assert.equal(v!.header.typeflag, "Z");
    assert.deepEqual(v!.body, Buffer.from("vendor data"));
    assert.equal(f!.header.path, "f");
  });

  it("caps metadata entries (default 1 MiB) without reading what they claim", async () => {
    const huge = encodeHeader({ name: "././@LongLink", typeflag: "L", size: 2 * 1024 * 1024 });
    await assert.rejects(readAll(chunked(huge)), corrupt(/GNU long name of 2097152 bytes exceeds the limit/));
    const small = Buffer.concat([meta("x", encodePax({ comment: "c".repeat(100) })), file("a", ""), TRAILER]);
    await assert.rejects(readAll(chunked(small), { maxMetaSize: 64 }), corrupt(/PAX extended header/));
  });

  it("refuses sparse entries (type S and GNU.sparse.* records)", async () => {
    await assert.rejects(
      readAll(chunked(Buffer.concat([file("s", "", { typeflag: "S" }), TRAILER]))),
      corrupt(/sparse/),
    );
    const pax = Buffer.concat([meta("x", encodePax({ "GNU.sparse.major": "1" })), file("s", ""), TRAILER]);
    await assert.rejects(readAll(chunked(pax)), corrupt(/sparse files are not supported/));
  });
});

describe("readTar: where archives end", () => {
  const two = Buffer.concat([file("a", "hello"), file("b", "x".repeat(700))]);

  it("ends at two zero blocks and ignores (but reads) what follows", async () => {
    let pulled = 0;
    const total = two.length + 1024 + 10240 + 4;
    async function* source() {
      for (const part of [two, TRAILER, Buffer.alloc(10240), Buffer.from("junk")]) {
        pulled += part.length;
        yield part;
      }
    }
    assert.deepEqual(
      (await readAll(source())).map((e) => e.header.path),
      ["a", "b"],
    );
    assert.equal(pulled, total);
  });

  it("with drainAfterEnd: false, releases the source right after the marker", async () => {
    let released = false;
    let pulled = 0;
    async function* source() {
      try {
        for (const part of [two, TRAILER, Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)]) {
          pulled += part.length;
          yield part;
        }
      } finally {
        released = true;
      }
    }
    assert.equal((await readAll(source(), { drainAfterEnd: false })).length, 2);
    assert.ok(released);
    assert.ok(pulled < 1 << 20);
  });

  it("accepts one zero block then the end, an empty stream, and no trailer at all (umoci 0.4.7)", async () => {
    assert.equal((await readAll(chunked(Buffer.concat([two, Buffer.alloc(512)])))).length, 2);
    assert.equal((await readAll(chunked(Buffer.alloc(0)))).length, 0);
    assert.equal((await readAll(chunked(Buffer.alloc(1024)))).length, 0);
    const entries = await readAll(chunked(two, [100]));
    assert.deepEqual(entries[1]!.body, Buffer.from("x".repeat(700)));
  });

  it("accepts a final entry whose padding is missing or cut short", async () => {
    const unpadded = two.subarray(0, two.length - (1024 - 700));
    for (const bytes of [unpadded, two.subarray(0, two.length - 100)]) {
      const entries = await readAll(chunked(bytes, [333]));
      assert.deepEqual(entries[1]!.body, Buffer.from("x".repeat(700)));
    }
  });

  it("rejects a body cut short, in the body stream when it is read", async () => {
    const cut = two.subarray(0, 512 + 512 + 512 + 300);
    const message = /^truncated: entry "b" claims 700 bytes, stream ended after 300$/;
    await assert.rejects(readAll(chunked(cut, [200])), corrupt(message));
  });

  it("rejects a body cut short, from the generator when the body is skipped", async () => {
    const cut = two.subarray(0, 512 + 512 + 512 + 300);
    const paths: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const entry of readTar(chunked(cut, [200]))) paths.push(entry.header.path);
      })(),
      corrupt(/^truncated: entry "b" claims 700 bytes, stream ended after 300$/),
    );
    assert.deepEqual(paths, ["a", "b"]);
  });

  it("rejects a metadata entry cut short and a stream ending inside a header", async () => {
    const pax = meta("x", encodePax({ path: "p".repeat(600) }));
    await assert.rejects(readAll(chunked(pax.subarray(0, 700))), corrupt(/truncated/));
    await assert.rejects(
      readAll(chunked(Buffer.concat([two, file("c", "c").subarray(0, 300)]))),
      corrupt(/tar header at byte 2560: stream ended inside the header/),
    );
  });

  it("rejects a bad checksum with the header's offset", async () => {
    const bad = Buffer.from(two);
    bad[1024 + 10] = 0x41;
    await assert.rejects(readAll(chunked(bad)), corrupt(/^tar header at byte 1024: checksum mismatch$/));
  });

  it("rejects a lone zero block followed by another header", async () => {
    const tar = Buffer.concat([file("a", "1"), Buffer.alloc(512), file("b", "2"), TRAILER]);
    await assert.rejects(readAll(chunked(tar)), corrupt(/lone zero block/));
  });

  it("reads the same entries, offsets and bodies whatever the chunking", async () => {
    const tar = Buffer.concat([
      file("one", "1".repeat(1500)),
      meta(
        "x",
        encodePax({ path: `deep/${"p".repeat(200)}`, "SCHILY.xattr.user.k": Buffer.from([0, 1, 2]) }),
      ),
      file("ignored", "2".repeat(512)),
      meta("L", Buffer.from(`${"l".repeat(150)}\0`)),
      file("ignored", ""),
      file("three", "3"),
      TRAILER,
    ]);
    const reference = await readAll(chunked(tar));
    assert.deepEqual(
      reference.map((e) => [e.header.path.slice(0, 6), e.offset, e.header.size]),
      [
        ["one", 0, 1500],
        ["deep/p", 3072, 512],
        ["llllll", 5120, 0],
        ["three", 5632, 1],
      ],
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 1400 }), { minLength: 1, maxLength: 20 }),
        async (sizes) => {
          assert.deepEqual(await readAll(chunked(tar, sizes)), reference);
        },
      ),
    );
  });
});

describe("readTar: consuming bodies", () => {
  const tar = Buffer.concat([file("a", "A".repeat(5000)), file("b", "B".repeat(3000)), TRAILER]);

  it("skips bodies that are not read, or read in part", async () => {
    const seen: string[] = [];
    for await (const entry of readTar(chunked(tar, [1000]))) {
      seen.push(entry.header.path);
      if (entry.header.path === "a") {
        for await (const chunk of entry.body) {
          assert.ok(chunk.length <= 1000);
          break;
        }
      }
    }
    assert.deepEqual(seen, ["a", "b"]);
  });

  it("destroys a body the consumer left behind, and gives no bytes to one asked for too late", async () => {
    const bodies: Readable[] = [];
    const entries: TarEntry[] = [];
    for await (const entry of readTar(chunked(tar))) {
      bodies.push(entry.body);
      entries.push(entry);
    }
    assert.ok(bodies[0]!.destroyed);
    const late: TarEntry[] = [];
    for await (const entry of readTar(chunked(tar))) late.push(entry);
    assert.ok(late[0]!.body.destroyed);
    await assert.rejects(buffer(late[0]!.body));
  });

  it("hands out subarrays of the source's chunks, not copies", async () => {
    const whole = Buffer.from(tar);
    async function* source() {
      yield whole;
    }
    for await (const entry of readTar(source())) {
      for await (const chunk of entry.body) assert.equal((chunk as Buffer).buffer, whole.buffer);
    }
  });

  it("does not pull from the source while a body is not being read (backpressure)", async () => {
    const size = 8 * 1024 * 1024;
    let pulled = 0;
    async function* source() {
      yield encodeHeader({ name: "big", typeflag: "0", size });
      pulled += 512;
      for (let i = 0; i < size / 65536; i++) {
        yield Buffer.alloc(65536, 1);
        pulled += 65536;
      }
      yield TRAILER;
    }
    const iterator = readTar(Readable.from(source(), { highWaterMark: 1 }))[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.done, false);
    const before = pulled;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(pulled - before <= 4 * 65536, `pulled ${pulled - before} bytes while nobody read`);
    let read = 0;
    const body = first.value!.body;
    for await (const chunk of body) {
      read += chunk.length;
      if (read >= 1024 * 1024) break;
    }
    assert.ok(pulled <= read + 8 * 65536, `pulled ${pulled} for ${read} read`);
    assert.equal((await iterator.next()).done, true);
  });

  it("reads a 200 MiB entry it skips in bounded memory (the tar is generated, never stored)", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const size = 200 * 1024 * 1024;
    gc();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    async function* generate() {
      yield encodeHeader({ name: "big", typeflag: "0", size });
      for (let i = 0; i < size / 65536; i++) {
        if (i % 128 === 0) {
          gc();
          peak = Math.max(peak, process.memoryUsage().rss);
        }
        yield Buffer.alloc(65536, i % 256); // fresh memory each time, as a real stream delivers
      }
      yield Buffer.concat([file("after", "ok"), TRAILER]);
    }
    const paths: string[] = [];
    for await (const entry of readTar(Readable.from(generate()))) paths.push(entry.header.path);
    assert.deepEqual(paths, ["big", "after"]);
    const growth = (peak - baseline) / (1024 * 1024);
    assert.ok(growth < 50, `RSS grew by ${growth.toFixed(1)} MiB`);
  });

  it("stops reading and releases the source when the consumer stops early", async () => {
    let released = false;
    async function* source() {
      try {
        yield tar;
        yield Buffer.alloc(1 << 20);
      } finally {
        released = true;
      }
    }
    for await (const entry of readTar(source())) {
      assert.equal(entry.header.path, "a");
      break;
    }
    assert.ok(released);
  });

  it("passes source errors to the body and the generator", async () => {
    async function* failing() {
      yield tar.subarray(0, 1000);
      throw new Error("disk on fire");
    }
    await assert.rejects(readAll(failing()), /disk on fire/);
    await assert.rejects(
      (async () => {
        for await (const _ of readTar(failing())) {
        }
      })(),
      /disk on fire/,
    );
  });
});
