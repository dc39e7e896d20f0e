import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import { decodeHeader, type RawHeader } from "./header.ts";
import { readTar, type TarHeader } from "./reader.ts";
import { encodeEntryHeader, type TarHeaderInput, TarWriter } from "./writer.ts";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

type Body = Buffer | Buffer[] | undefined;
interface Item {
  header: TarHeaderInput;
  body: Body;
}

/** Writes the items (stream bodies as Readables of the given chunks) and returns the archive. */
async function write(items: Item[]): Promise<Buffer> {
  const writer = new TarWriter();
  const out = buffer(writer.readable);
  try {
    for (const { header, body } of items) {
      await writer.entry(header, Array.isArray(body) ? Readable.from(body) : body);
    }
    await writer.finish();
  } catch (error) {
    out.catch(() => {});
    throw error;
  }
  return out;
}

async function read(tar: Buffer): Promise<Array<{ header: TarHeader; body: Buffer }>> {
  const out: Array<{ header: TarHeader; body: Buffer }> = [];
  for await (const entry of readTar(Readable.from([tar])))
    out.push({ header: entry.header, body: await buffer(entry.body) });
  return out;
}

const bodyBytes = (body: Body) =>
  body === undefined ? Buffer.alloc(0) : Array.isArray(body) ? Buffer.concat(body) : body;

/** What the reader must report for an input header. */
function expected(input: TarHeaderInput, body: Body): Omit<TarHeader, "pax"> {
  const type = input.type;
  const isLink = type === "link" || type === "symlink";
  const isDevice = type === "char" || type === "block";
  return {
    path: input.path,
    type,
    typeflag: { file: "0", link: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" }[type],
    mode: (input.mode ?? (type === "dir" ? 0o755 : type === "symlink" ? 0o777 : 0o644)) & 0o7777,
    uid: input.uid ?? 0,
    gid: input.gid ?? 0,
    uname: input.uname ?? "",
    gname: input.gname ?? "",
    size: type === "file" ? bodyBytes(body).length : 0,
    mtime: Math.floor(input.mtime ?? 0) + 0, // + 0 turns -0 into 0
    linkname: isLink ? input.linkname! : "",
    devmajor: isDevice ? (input.devmajor ?? 0) : 0,
    devminor: isDevice ? (input.devminor ?? 0) : 0,
    xattrs: Object.fromEntries(Object.entries(input.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
  };
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

const segment = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/).filter((s) => s !== "." && s !== "..");
const unicodeSegment = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 30 })
  .map((s) => s.replaceAll("\0", "").replaceAll("/", ""))
  .filter((s) => s.length > 0);
const path = fc.oneof(
  fc.array(segment, { minLength: 1, maxLength: 3 }).map((p) => p.join("/")),
  fc.array(fc.oneof(segment, unicodeSegment), { minLength: 1, maxLength: 4 }).map((p) => p.join("/")),
  // > 100 bytes, usually splittable into prefix/name.
  fc.array(segment, { minLength: 4, maxLength: 8 }).map((p) => p.join("/")),
  // > 255 bytes: PAX.
  fc.tuple(segment, fc.integer({ min: 256, max: 600 })).map(([s, n]) => `${s}/${"x".repeat(n)}`),
);
const id = fc.oneof(
  fc.integer({ min: 0, max: 65535 }),
  fc.integer({ min: 0, max: 2 ** 21 - 1 }),
  fc.integer({ min: 2 ** 21, max: 2 ** 32 }),
);
const ownerName = fc.oneof(
  fc.constant(undefined),
  fc.stringMatching(/^[a-z_][a-z0-9_-]{0,31}$/),
  unicodeSegment,
);
const mtime = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 33 - 1 }),
  fc.integer({ min: -(2 ** 40), max: -1 }),
  fc.integer({ min: 2 ** 33, max: 2 ** 40 }),
  fc.double({ min: 0, max: 2e9, noNaN: true }),
);
const linkname = fc.oneof(
  path,
  fc.constant("/etc/passwd"),
  fc.string({ unit: "grapheme", minLength: 120, maxLength: 200 }).map((s) => s.replaceAll("\0", "") || "x"),
);
const xattrs = fc.option(
  fc.dictionary(
    fc.stringMatching(/^(user|security|trusted)\.[a-z0-9._-]{1,20}$/),
    fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
    { maxKeys: 3 },
  ),
  { nil: undefined },
);

const item: fc.Arbitrary<Item> = fc
  .record({
    path,
    type: fc.constantFrom("file", "file", "dir", "symlink", "link", "char", "block", "fifo" as const),
    mode: fc.option(fc.integer({ min: 0, max: 0o7777 }), { nil: undefined }),
    uid: id,
    gid: id,
    uname: ownerName,
    gname: ownerName,
    mtime,
    linkname,
    devmajor: fc.integer({ min: 0, max: 4095 }),
    devminor: fc.integer({ min: 0, max: 2 ** 20 - 1 }),
    xattrs,
    content: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    chunks: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 5 }),
  })
  .map(({ content, chunks, ...h }) => {
    const header: TarHeaderInput = { path: h.path, type: h.type, uid: h.uid, gid: h.gid, mtime: h.mtime };
    if (h.mode !== undefined) header.mode = h.mode;
    if (h.uname !== undefined) header.uname = h.uname;
    if (h.gname !== undefined) header.gname = h.gname;
    if (h.xattrs !== undefined) header.xattrs = h.xattrs;
    if (h.type === "link" || h.type === "symlink") header.linkname = h.linkname;
    if (h.type === "char" || h.type === "block")
      Object.assign(header, { devmajor: h.devmajor, devminor: h.devminor });
    let body: Body;
    if (h.type === "file") {
      if (chunks.length === 0) body = content;
      else {
        header.size = content.length;
        const parts: Buffer[] = [];
        for (let i = 0, k = 0; i < content.length; k++) {
          const n = chunks[k % chunks.length]!;
          parts.push(content.subarray(i, i + n));
          i += n;
        }
        body = parts;
      }
    }
    return { header, body };
  });

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "roci-tar-writer-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("TarWriter: round trips through readTar", () => {
  it("reads back every entry identically (Unicode, long names and link targets, big ids and times, xattrs, devices)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 8 }), async (items) => {
        const tar = await write(items);
        const entries = await read(tar);
        assert.equal(entries.length, items.length);
        entries.forEach(({ header, body }, i) => {
          const { pax: _, ...got } = header;
          assert.deepEqual(got, expected(items[i]!.header, items[i]!.body));
          assert.deepEqual(body, bodyBytes(items[i]!.body));
        });
      }),
      { numRuns: 150 },
    );
  });

  it("is deterministic: the same entries give the same bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 6 }), async (items) => {
        assert.deepEqual(await write(items), await write(items));
      }),
      { numRuns: 50 },
    );
  });
});

describe("TarWriter: format (RP-5)", () => {
  const headerAt = (tar: Buffer, offset: number) =>
    decodeHeader(tar.subarray(offset, offset + 512), offset) as RawHeader;

  it("writes plain USTAR when everything fits, splitting long paths into prefix/name", async () => {
    const long = `${"dir/".repeat(30)}file`;
    const tar = await write([
      { header: { path: "etc/", type: "dir" }, body: undefined },
      {
        header: { path: long, type: "file", uid: 2 ** 21 - 1, uname: "u".repeat(32) },
        body: Buffer.from("x"),
      },
    ]);
    assert.equal(tar.length, 512 + 512 + 512 + 1024);
    const second = headerAt(tar, 512);
    assert.equal(second.typeflag, "0");
    assert.equal(second.format, "ustar");
    assert.equal(`${second.prefix}/${second.name}`, long);
    assert.deepEqual(
      (await read(tar)).map((e) => e.header.pax),
      [{}, {}],
    );
  });

  it("adds a PAX header with only the records that are needed", async () => {
    const cases: Array<[TarHeaderInput, Record<string, string>]> = [
      [{ path: "f", type: "file", uid: 2 ** 21 }, { uid: "2097152" }],
      [{ path: "f", type: "file", gid: 3e9 }, { gid: "3000000000" }],
      [{ path: `a/${"x".repeat(101)}`, type: "file" }, { path: `a/${"x".repeat(101)}` }],
      [{ path: "caf\u00e9", type: "file" }, { path: "caf\u00e9" }],
      [{ path: "l", type: "symlink", linkname: "t".repeat(101) }, { linkpath: "t".repeat(101) }],
      [{ path: "f", type: "file", uname: "\u00fcser" }, { uname: "\u00fcser" }],
      [{ path: "f", type: "file", gname: "g".repeat(33) }, { gname: "g".repeat(33) }],
      [{ path: "f", type: "file", mtime: -1 }, { mtime: "-1" }],
      [{ path: "f", type: "file", mtime: 2 ** 33 }, { mtime: "8589934592" }],
      [{ path: "f", type: "file", xattrs: { "security.capability": Buffer.from([1, 2]) } }, {}],
    ];
    for (const [header, records] of cases) {
      const tar = await write([{ header, body: undefined }]);
      const x = headerAt(tar, 0);
      assert.equal(x.typeflag, "x", JSON.stringify(header));
      assert.equal(x.mode, 0o644);
      assert.equal(x.mtime, 0);
      const [entry] = await read(tar);
      assert.deepEqual(entry!.header.pax, records, JSON.stringify(header));
    }
  });

  it("names the PAX header <dir>/PaxHeaders.0/<base>", async () => {
    const tar = await write([{ header: { path: "usr/lib/caf\u00e9", type: "file" }, body: undefined }]);
    assert.equal(headerAt(tar, 0).name, "usr/lib/PaxHeaders.0/caf");
  });

  it("records sizes of 8 GiB and more in PAX (checked on the header alone)", async () => {
    const size = 9 * 2 ** 30;
    const headers = encodeEntryHeader({ path: "huge", type: "file" }, size);
    assert.equal(headers.length, 512 * 3);
    const iterator = readTar(Readable.from([headers]))[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.value!.header.size, size);
    assert.deepEqual(first.value!.header.pax, { size: String(size) });
    await iterator.return();
    assert.equal(encodeEntryHeader({ path: "big", type: "file" }, 2 ** 33 - 1).length, 512);
  });

  it("writes device numbers only for devices, and whole-second mtimes", async () => {
    const tar = await write([
      { header: { path: "f", type: "file", mtime: 1700000000.9 }, body: Buffer.from("1") },
      { header: { path: "null", type: "char", devmajor: 1, devminor: 3 }, body: undefined },
    ]);
    assert.equal(tar.toString("latin1", 329, 345), "\0".repeat(16));
    assert.equal(tar.toString("latin1", 1024 + 329, 1024 + 345), "0000001\x000000003\0");
    assert.equal(headerAt(tar, 0).mtime, 1700000000);
  });

  it("ends with exactly two zero blocks, not padded to a 10240-byte record", async () => {
    const tar = await write([{ header: { path: "a", type: "file" }, body: Buffer.from("a") }]);
    assert.equal(tar.length, 2048);
    assert.ok(tar.subarray(1024).every((b) => b === 0));
    assert.equal((await write([])).length, 1024);
  });
});

describe("TarWriter: bodies and errors", () => {
  it("refuses a stream body that is short or long (SIZE_MISMATCH) and breaks the archive", async () => {
    for (const chunks of [[Buffer.from("abc")], [Buffer.from("abcdef"), Buffer.from("g")]]) {
      const writer = new TarWriter();
      const out = buffer(writer.readable);
      await assert.rejects(
        writer.entry({ path: "f", type: "file", size: 5 }, Readable.from(chunks)),
        (e) => isRociError(e, "SIZE_MISMATCH") && e.message.includes('"f"'),
      );
      await assert.rejects(out, (e) => isRociError(e, "SIZE_MISMATCH"));
      await assert.rejects(writer.finish(), (e) => isRociError(e, "SIZE_MISMATCH"));
    }
  });

  it("refuses invalid input before writing anything, and stays usable", async () => {
    const writer = new TarWriter();
    const out = buffer(writer.readable);
    const bad: Array<[TarHeaderInput, Buffer | undefined, string]> = [
      [{ path: "", type: "file" }, undefined, "INTERNAL"],
      [{ path: "a\0b", type: "file" }, undefined, "INTERNAL"],
      [{ path: "s", type: "symlink" }, undefined, "INTERNAL"],
      [{ path: "d", type: "dir" }, Buffer.from("x"), "INTERNAL"],
      [{ path: "f", type: "file", uid: -1 }, undefined, "INTERNAL"],
      [{ path: "f", type: "file", mode: -1 }, undefined, "INTERNAL"],
      [{ path: "f", type: "file", mtime: Number.NaN }, undefined, "INTERNAL"],
      [{ path: "f", type: "file", size: 3 }, undefined, "INTERNAL"],
      [{ path: "f", type: "file", size: 3 }, Buffer.from("ab"), "SIZE_MISMATCH"],
      [{ path: "f", type: "file", xattrs: { "a=b": "x" } }, undefined, "INTERNAL"],
      [{ path: "c", type: "char", devmajor: 2 ** 21 }, undefined, "INTERNAL"],
    ];
    for (const [header, body, code] of bad) {
      await assert.rejects(
        writer.entry(header, body),
        (e) => isRociError(e, code as "INTERNAL"),
        JSON.stringify(header),
      );
    }
    const unread = Readable.from([Buffer.from("abc")]);
    await assert.rejects(writer.entry({ path: "nosize", type: "file" }, unread), (e) =>
      isRociError(e, "INTERNAL"),
    );
    assert.ok(unread.destroyed, "a refused stream body is destroyed, not left open");
    await writer.entry({ path: "ok", type: "file" }, Buffer.from("fine"));
    await writer.finish();
    const entries = await read(await out);
    assert.deepEqual(
      entries.map((e) => [e.header.path, e.body.toString()]),
      [["ok", "fine"]],
    );
  });

  it("keeps call order when entries are not awaited one by one", async () => {
    const writer = new TarWriter();
    const out = buffer(writer.readable);
    const slow = Readable.from(
      (async function* () {
        await new Promise((resolve) => setTimeout(resolve, 20));
        yield Buffer.from("slow");
      })(),
    );
    await Promise.all([
      writer.entry({ path: "1", type: "file", size: 4 }, slow),
      writer.entry({ path: "2", type: "file" }, Buffer.from("fast")),
      writer.finish(),
    ]);
    assert.deepEqual(
      (await read(await out)).map((e) => e.body.toString()),
      ["slow", "fast"],
    );
  });

  it("waits for the consumer (backpressure) instead of buffering the archive", async () => {
    const writer = new TarWriter({ highWaterMark: 16 * 1024 });
    let done = false;
    const pending = writer.entry({ path: "big", type: "file" }, Buffer.alloc(1024 * 1024)).then(() => {
      done = true;
    });
    const second = writer.entry({ path: "next", type: "file" }, Buffer.alloc(10));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(done, false);
    assert.ok(writer.readable.readableLength <= 1024 * 1024 + 512);
    const finished = writer.finish();
    const tar = await buffer(writer.readable);
    await Promise.all([pending, second, finished]);
    assert.equal(tar.length, 512 + 1024 * 1024 + 512 + 512 + 1024);
    assert.equal(writer.position, tar.length);
  });

  it("rejects pending entries when the consumer destroys the stream", async () => {
    const writer = new TarWriter({ highWaterMark: 1024 });
    const pending = writer.entry({ path: "big", type: "file" }, Buffer.alloc(8192));
    writer.readable.destroy();
    await assert.rejects(pending, (e) => isRociError(e, "INTERRUPTED"));
  });
});

// ---------------------------------------------------------------------------------------------
// Other readers of our output

const MTIME = 1650000000;
const LONG = `${"long-directory-name/".repeat(8)}${"f".repeat(120)}`;
const UNI = "d\u00e9j\u00e0-vu/\u0444\u0430\u0439\u043b-\u{1f40b}";
const sample: Item[] = [
  { header: { path: "bin/", type: "dir", mtime: MTIME }, body: undefined },
  {
    header: { path: "bin/tool", type: "file", mode: 0o755, mtime: MTIME },
    body: Buffer.from("#!/bin/sh\necho hi\n"),
  },
  { header: { path: "bin/alias", type: "link", linkname: "bin/tool", mtime: MTIME }, body: undefined },
  { header: { path: "bin/sym", type: "symlink", linkname: "tool", mtime: MTIME }, body: undefined },
  {
    header: { path: "bin/abs", type: "symlink", linkname: `/${"t".repeat(150)}`, mtime: MTIME },
    body: undefined,
  },
  { header: { path: "empty", type: "file", mode: 0o600, mtime: MTIME }, body: Buffer.alloc(0) },
  { header: { path: "owned", type: "file", uid: 3000000, gid: 1234, mtime: MTIME }, body: Buffer.from("o") },
  { header: { path: "d\u00e9j\u00e0-vu/", type: "dir", mtime: MTIME }, body: undefined },
  { header: { path: UNI, type: "file", mtime: MTIME }, body: Buffer.from("unicode") },
  { header: { path: "long-directory-name/", type: "dir", mtime: MTIME }, body: undefined },
  {
    header: { path: LONG, type: "file", size: 1600, mtime: MTIME },
    body: [Buffer.alloc(700, 1), Buffer.alloc(900, 2)],
  },
  {
    header: { path: "xattr", type: "file", mtime: MTIME, xattrs: { "user.roci": Buffer.from("v\u00e9") } },
    body: Buffer.from("x"),
  },
  { header: { path: "fifo", type: "fifo", mode: 0o600, mtime: MTIME }, body: undefined },
  {
    header: { path: "null", type: "char", mode: 0o666, devmajor: 1, devminor: 3, mtime: MTIME },
    body: undefined,
  },
  {
    header: { path: "loop", type: "block", mode: 0o660, devmajor: 7, devminor: 200, mtime: MTIME },
    body: undefined,
  },
];

describe("TarWriter: output accepted by GNU tar and Python's tarfile", () => {
  it("lists with tar -tvf and extracts with tar -xf to identical content", async () => {
    const tarPath = join(work, "sample.tar");
    await writeFile(tarPath, await write(sample));
    const { stdout: listing } = await run("tar", ["-tf", tarPath]);
    assert.deepEqual(
      listing.trimEnd().split("\n"),
      sample.map((s) => s.header.path),
    );
    await run("tar", ["-tvf", tarPath]);

    const dest = join(work, "extracted");
    await mkdir(dest);
    const devices = isRoot ? [] : ["--exclude=null", "--exclude=loop"];
    await run("tar", [
      "--xattrs",
      "--xattrs-include=*",
      "--numeric-owner",
      ...devices,
      "-xpf",
      tarPath,
      "-C",
      dest,
    ]);
    for (const { header, body } of sample) {
      if (!isRoot && (header.type === "char" || header.type === "block")) continue;
      const at = join(dest, header.path);
      const st = await lstat(at);
      const want = expected(header, body);
      switch (header.type) {
        case "file":
          assert.ok(st.isFile(), header.path);
          assert.deepEqual(await readFile(at), bodyBytes(body), header.path);
          break;
        case "dir":
          assert.ok(st.isDirectory(), header.path);
          break;
        case "symlink":
          assert.equal(await readlink(at), header.linkname);
          break;
        case "link":
          assert.equal(st.ino, (await lstat(join(dest, header.linkname!))).ino);
          continue; // the target's inode: its mode, owner and mtime are checked there
        case "fifo":
          assert.ok(st.isFIFO());
          break;
        case "char":
        case "block":
          assert.ok(header.type === "char" ? st.isCharacterDevice() : st.isBlockDevice());
          assert.equal(st.rdev, (want.devmajor << 8) | want.devminor);
          break;
      }
      if (header.type !== "symlink") assert.equal(st.mode & 0o7777, want.mode, `${header.path} mode`);
      if (header.type !== "dir") assert.equal(st.mtimeMs / 1000, MTIME, `${header.path} mtime`);
      if (isRoot) assert.deepEqual([st.uid, st.gid], [want.uid, want.gid], `${header.path} owner`);
    }
    const { stdout: xattr } = await run("python3", [
      "-c",
      "import os, sys; sys.stdout.write(os.getxattr(sys.argv[1], 'user.roci').hex())",
      join(dest, "xattr"),
    ]);
    assert.equal(xattr, Buffer.from("v\u00e9").toString("hex"));
  });

  it("reads the same entries with Python's tarfile", async () => {
    const tarPath = join(work, "sample-py.tar");
    await writeFile(tarPath, await write(sample));
    const script = `
import json, sys, tarfile
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        body = t.extractfile(m).read().hex() if m.isreg() else ""
        out.append([m.name if not m.isdir() else m.name + "/", m.type.decode(), m.size, m.linkname, m.uid, m.gid, m.mode, m.mtime, body, {k: v.encode("utf-8", "surrogateescape").hex() for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}])
print(json.dumps(out))
`;
    const { stdout } = await run("python3", ["-c", script, tarPath]);
    const rows = JSON.parse(stdout) as unknown[][];
    assert.deepEqual(
      rows,
      sample.map(({ header, body }) => {
        const want = expected(header, body);
        return [
          header.path,
          want.typeflag,
          want.size,
          want.linkname,
          want.uid,
          want.gid,
          want.mode,
          MTIME,
          header.type === "file" ? bodyBytes(body).toString("hex") : "",
          Object.fromEntries(
            Object.entries(want.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v.toString("hex")]),
          ),
        ];
      }),
    );
  });
});
