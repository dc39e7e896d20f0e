/**
 * Writing layers: random trees (fast-check) made on disk → walkDirectory → writeLayer (gzip, none) →
 * RootfsApplier into a fresh directory give back the same tree (paths, types, modes, owners, sizes,
 * contents, symlink targets, hard-link groups, mtimes); the same tree written twice gives the same
 * bytes; SOURCE_DATE_EPOCH pins or clamps every time. Then what other tools make of roci's layers
 * (GNU tar, Python's tarfile, umoci), and `roci layer create`.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  chmod,
  chown,
  lchown,
  link,
  lutimes,
  symlink as makeSymlink,
  mkdir,
  readdir,
  readFile,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { zstdCalls } from "../native/zstd.ts";
import { readTar, type TarHeader } from "../tar/reader.ts";
import { diffTrees, multiFileLayers, scanTree, sha256, tempDir } from "../test-support/images.ts";
import { runRoci } from "../test-support/run.ts";
import { RootfsApplier } from "./apply.ts";
import type { Compression } from "./compression.ts";
import type { LayerEntry } from "./entry.ts";
import { walkDirectory } from "./walk.ts";
import { writeLayer } from "./write-layer.ts";

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;

// ─── random trees ────────────────────────────────────────────────────────────────────────────────

interface FileSpec {
  kind: "file";
  content: Uint8Array;
  mode: number;
  mtime: number;
  owner: number;
}
interface SymlinkSpec {
  kind: "symlink";
  target: string;
  mtime: number;
  owner: number;
}
interface DirSpec {
  kind: "dir";
  mode: number;
  mtime: number;
  owner: number;
  children: Array<[string, NodeSpec]>;
}
type NodeSpec = FileSpec | SymlinkSpec | DirSpec;

interface TreeSpec {
  root: Array<[string, NodeSpec]>;
  /** A chain of directories this deep (0: none), with a file at the bottom: paths needing PAX. */
  depth: number;
  /** Hard links: (file index, directory index, name), both indexes modulo what exists. */
  links: Array<[number, number, string]>;
}

const nameArb = fc
  .oneof(
    { weight: 5, arbitrary: fc.stringMatching(/^[a-zA-Z0-9_-][a-zA-Z0-9_. -]{0,11}$/) },
    fc.constantFrom("héllo wörld", "日本語", "ファイル.txt", "🎉", "naïve", "Ünïcödé", "ß", "a\tb", "x\\y"),
    fc.integer({ min: 90, max: 250 }).map((n) => "n".repeat(n)),
  )
  .filter((name) => name !== "." && name !== ".." && !name.startsWith(".wh.") && name.trim() === name);
const ownerArb = fc.constantFrom(0, 0, 1, 1000, 65534, 2_097_152); // 2^21 needs a PAX uid/gid
const mtimeArb = fc.oneof(
  fc.integer({ min: 0, max: 2_000_000_000 }),
  // Past the 11-digit octal field (8^11 s, year 2242): a PAX mtime. No times before 1970: Node's
  // utimes turns negative numbers into "now" (see apply.test.ts, pre-1970 mtimes).
  fc.constantFrom(0, 1, 1_700_000_000, 8_589_934_591, 8_589_934_592, 15_000_000_000),
);
const fileArb: fc.Arbitrary<FileSpec> = fc.record({
  kind: fc.constant("file" as const),
  content: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 3000 })),
  mode: fc.constantFrom(0o644, 0o755, 0o600, 0o400, 0o000, 0o4755, 0o2755, 0o1644, 0o777),
  mtime: mtimeArb,
  owner: ownerArb,
});
const symlinkArb: fc.Arbitrary<SymlinkSpec> = fc.record({
  kind: fc.constant("symlink" as const),
  target: fc.oneof(
    fc.constantFrom("/", "/etc/passwd", "../x", "a/b", ".", "..", "日本/語", "dangling"),
    fc.integer({ min: 100, max: 300 }).map((n) => `../${"t".repeat(n)}`),
  ),
  mtime: mtimeArb,
  owner: ownerArb,
});
const dirMode = fc.constantFrom(0o755, 0o700, 0o1777, 0o555, 0o2775, 0o500, 0o750);
const { node: nodeArb } = fc.letrec<{ node: NodeSpec; dir: DirSpec }>((tie) => ({
  node: fc.oneof({ maxDepth: 4, depthIdentifier: "tree" }, fileArb, symlinkArb, tie("dir")),
  dir: fc.record({
    kind: fc.constant("dir" as const),
    mode: dirMode,
    mtime: mtimeArb,
    owner: ownerArb,
    children: fc.uniqueArray(fc.tuple(nameArb, tie("node")), {
      selector: ([name]) => name,
      maxLength: 5,
      depthIdentifier: "tree",
    }),
  }),
}));
const treeArb: fc.Arbitrary<TreeSpec> = fc.record({
  root: fc.uniqueArray(fc.tuple(nameArb, nodeArb), { selector: ([name]) => name, maxLength: 6 }),
  depth: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 25 })),
  links: fc.array(fc.tuple(fc.nat(), fc.nat(), nameArb), { maxLength: 4 }),
});

/** Creates the tree under `root` (which exists): contents first, attributes after, directories last. */
async function materialize(root: string, spec: TreeSpec): Promise<void> {
  const files: string[] = [];
  const dirs: Array<{ path: string; node: DirSpec }> = [];
  const create = async (path: string, node: NodeSpec): Promise<void> => {
    if (node.kind === "file") {
      await writeFile(path, node.content);
      await chmod(path, node.mode);
      if (isRoot) await chown(path, node.owner, node.owner + 1);
      await lutimes(path, node.mtime, node.mtime);
      files.push(path);
    } else if (node.kind === "symlink") {
      await makeSymlink(node.target, path);
      if (isRoot) await lchown(path, node.owner, node.owner);
      await lutimes(path, node.mtime, node.mtime);
    } else {
      await mkdir(path);
      for (const [name, child] of node.children) await create(join(path, name), child);
      dirs.push({ path, node });
    }
  };
  for (const [name, node] of spec.root) await create(join(root, name), node);
  if (spec.depth > 0) {
    let path = root;
    for (let i = 0; i < spec.depth; i++) {
      path = join(path, i === 0 ? "deep" : `level-${String(i).padStart(2, "0")}-of-the-chain`);
      await mkdir(path);
      dirs.push({
        path,
        node: { kind: "dir", mode: 0o755, mtime: 1_600_000_000 + i, owner: 0, children: [] },
      });
    }
    await writeFile(join(path, "bottom"), "bottom");
    await lutimes(join(path, "bottom"), 1_650_000_000, 1_650_000_000);
    files.push(join(path, "bottom"));
  }
  const linkDirs = [root, ...dirs.map(({ path }) => path)];
  for (const [fileIndex, dirIndex, name] of spec.links) {
    if (files.length === 0) break;
    const target = join(linkDirs[dirIndex % linkDirs.length]!, name);
    if ((await readdir(join(target, "..")).catch((): string[] => [])).includes(name)) continue;
    await link(files[fileIndex % files.length]!, target);
  }
  // Directories last, children before parents (dirs lists them so): their times stay as set.
  for (const { path, node } of dirs) {
    await chmod(path, node.mode);
    if (isRoot) await chown(path, node.owner, node.owner);
    await lutimes(path, node.mtime, node.mtime);
  }
}

// ─── writing and reading back ────────────────────────────────────────────────────────────────────

async function write(
  entries: readonly LayerEntry[],
  compression: Compression,
): Promise<{ bytes: Buffer; digest: string; diffId: string; size: number; mediaType: string }> {
  const sink = new PassThrough();
  const collected = buffer(sink);
  const written = await writeLayer(entries, sink, { compression });
  const bytes = await collected;
  return {
    bytes,
    digest: written.descriptor.digest,
    diffId: written.diffId,
    size: written.descriptor.size,
    mediaType: written.descriptor.mediaType,
  };
}

async function headers(tar: Buffer): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  for await (const entry of readTar(Readable.from([tar]))) out.push(entry.header);
  return out;
}

/** Applies one layer onto a new directory; `emptyTarget` as unpackImage passes it for a new target. */
async function applyTar(tar: Buffer, options: { emptyTarget?: boolean } = {}): Promise<string> {
  const target = join(await tempDir("roci-applied-"), "rootfs");
  await mkdir(target);
  await new RootfsApplier(target, options).apply(readTar(Readable.from([tar])), "layer");
  return target;
}

describe("writeLayer round trips (property)", () => {
  it("random trees → walk → write (gzip, none) → apply: the same tree, the same bytes twice", async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, async (spec) => {
        const src = join(await tempDir("roci-src-"), "src");
        await mkdir(src);
        await materialize(src, spec);
        const entries = await walkDirectory(src);
        const gzip = await write(entries, "gzip");
        const none = await write(entries, "none");

        // Descriptors: digest and size of what was written, diff_id of the tar, equal for "none".
        assert.equal(gzip.digest, sha256(gzip.bytes));
        assert.equal(gzip.size, gzip.bytes.length);
        assert.equal(gzip.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
        const tar = gunzipSync(gzip.bytes);
        assert.equal(gzip.diffId, sha256(tar));
        assert.ok(none.bytes.equals(tar), "none is the tar gzip compresses");
        assert.equal(none.digest, none.diffId);
        assert.equal(none.diffId, gzip.diffId);
        assert.equal(none.mediaType, "application/vnd.oci.image.layer.v1.tar");

        // Reproducible: the same entries, and a new walk, give the same bytes.
        assert.ok((await write(entries, "gzip")).bytes.equals(gzip.bytes), "same entries, same bytes");
        const again = await write(await walkDirectory(src), "gzip");
        assert.ok(again.bytes.equals(gzip.bytes), "a second walk, same bytes");

        // Applied back: the same tree (the target directory's own mtime is the test's).
        const before = await scanTree(src);
        for (const emptyTarget of [false, true]) {
          const after = await scanTree(await applyTar(tar, { emptyTarget }));
          const differences = diffTrees(before, after, { ignoreMtimeOf: ["."], owners: isRoot });
          assert.deepEqual(
            differences,
            [],
            `emptyTarget ${emptyTarget}, spec: ${JSON.stringify(spec, replacer)}`,
          );
        }
      }),
      {
        numRuns: Number(process.env.ROCI_FC_RUNS ?? 25),
        seed: Number(process.env.ROCI_FC_SEED ?? 20_261_128),
        endOnFailure: true,
        includeErrorInReport: true,
      },
    );
  });

  it("SOURCE_DATE_EPOCH: pin sets every time to it, clamp keeps the older ones", async () => {
    const epoch = 1_500_000_000;
    await fc.assert(
      fc.asyncProperty(treeArb, async (spec) => {
        const src = join(await tempDir("roci-src-"), "src");
        await mkdir(src);
        await materialize(src, spec);
        const source = await scanTree(src);
        const original = (path: string) => Number(source.get(path)!.mtimeNs / 1_000_000_000n);

        const pinned = await headers(
          (await write(await walkDirectory(src, { sourceDateEpoch: epoch, timestamps: "pin" }), "none"))
            .bytes,
        );
        for (const header of pinned) assert.equal(header.mtime, epoch, header.path);

        const clamped = await headers(
          (await write(await walkDirectory(src, { sourceDateEpoch: epoch, timestamps: "clamp" }), "none"))
            .bytes,
        );
        for (const header of clamped) {
          const path = header.path.replace(/\/$/, "");
          assert.equal(header.mtime, Math.min(original(path), epoch), path);
        }
        assert.equal(pinned.length, source.size - 1, "every path but the root");
        assert.equal(clamped.length, pinned.length);

        // Pinned, then applied: every time in the tree is the epoch.
        const applied = await scanTree(
          await applyTar((await write(await walkDirectory(src, { sourceDateEpoch: epoch }), "none")).bytes),
        );
        for (const [path, node] of applied) {
          if (path !== ".") assert.equal(node.mtimeNs, BigInt(epoch) * 1_000_000_000n, path);
        }
      }),
      { numRuns: 10, seed: 7, endOnFailure: true, includeErrorInReport: true },
    );
  });
});

/** JSON.stringify replacer for failure messages: bytes as lengths. */
function replacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? `<${value.length} bytes>` : value;
}

// ─── a rich fixed tree: other tools read roci's layers ───────────────────────────────────────────

/** The multi-file image's tree (devices, FIFO, hard links, long and Unicode names), applied as root. */
async function richTree(): Promise<string> {
  const root = join(await tempDir("roci-rich-"), "rootfs");
  await mkdir(root);
  const applier = new RootfsApplier(root);
  for (const [index, tar] of (await multiFileLayers()).entries()) {
    await applier.apply(readTar(Readable.from([tar])), `layer ${index + 1}`);
  }
  return root;
}

describe("other tools read roci's layers", { skip: !isRoot && "needs root (devices, owners)" }, () => {
  it("GNU tar lists every entry (tar -tvzf), Python's tarfile reads the same paths", async () => {
    const root = await richTree();
    const entries = await walkDirectory(root);
    const layer = join(await tempDir(), "layer.tar.gz");
    await writeFile(layer, (await write(entries, "gzip")).bytes);
    const { stdout } = await exec("tar", ["-tvzf", layer], { env: { ...process.env, LC_ALL: "C.UTF-8" } });
    assert.equal(stdout.trimEnd().split("\n").length, entries.length);
    assert.match(stdout, /^crw-rw-rw- 0\/0 +1,3 .* dev\/null$/m);
    assert.match(stdout, /^hrwxr-xr-x .* bin\/sh-hard1 link to bin\/sh$/m);
    assert.match(stdout, /^prw--w---- .* run\/fifo$/m);
    const { stdout: names } = await exec("python3", [
      "-c",
      "import sys, tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name)",
      layer,
    ]);
    assert.deepEqual(
      names.trimEnd().split("\n"),
      entries.map((entry) => entry.path),
    );
  });

  it("umoci raw add-layer of roci's uncompressed layer, then umoci unpack: the same tree", async () => {
    const root = await richTree();
    const area = await tempDir();
    const layer = join(area, "layer.tar");
    await writeFile(layer, (await write(await walkDirectory(root), "none")).bytes);
    const layout = join(area, "layout");
    await exec("umoci", ["init", "--layout", layout]);
    await exec("umoci", ["new", "--image", `${layout}:t`]);
    await exec("umoci", ["raw", "add-layer", "--image", `${layout}:t`, layer]);
    await exec("umoci", ["unpack", "--image", `${layout}:t`, join(area, "bundle")]);
    const [expected, unpacked] = await Promise.all([
      scanTree(root),
      scanTree(join(area, "bundle", "rootfs")),
    ]);
    assert.deepEqual(diffTrees(expected, unpacked, { ignoreMtimeOf: ["."] }), []);
  });
});

// ─── roci layer create ───────────────────────────────────────────────────────────────────────────

interface Created {
  descriptor: { mediaType: string; digest: string; size: number };
  diffId: string;
  file: string;
  entries: number;
}

describe("roci layer create", () => {
  async function source(): Promise<string> {
    const src = join(await tempDir(), "src");
    await mkdir(join(src, "app"), { recursive: true });
    await writeFile(join(src, "app", "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    await writeFile(join(src, "app", "empty"), "");
    await makeSymlink("run.sh", join(src, "app", "link"));
    await lutimes(join(src, "app", "run.sh"), 1_000_000_000, 1_000_000_000);
    return src;
  }

  async function create(src: string, args: string[] = [], env?: Record<string, string>) {
    const out = join(await tempDir(), "layer");
    const result = await runRoci(["layer", "create", src, "-o", out, ...args], env ? { env } : {});
    return { result, out };
  }

  it("prints the descriptor and diff_id: sha256 of the file and of its gunzip", async () => {
    const { result, out } = await create(await source());
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout.toString()) as Created;
    const bytes = await readFile(out);
    assert.deepEqual(printed.descriptor, {
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: sha256(bytes),
      size: bytes.length,
    });
    assert.equal(printed.diffId, sha256(gunzipSync(bytes)));
    assert.equal(printed.file, out);
    assert.equal(printed.entries, 4);
    assert.deepEqual(
      (await headers(gunzipSync(bytes))).map((h) => `${h.type} ${h.path}`),
      ["dir app/", "file app/empty", "symlink app/link", "file app/run.sh"],
    );
  });

  it("--compression none: digest == diffId, plain tar media type", async () => {
    const { result, out } = await create(await source(), ["--compression", "none"]);
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout.toString()) as Created;
    const bytes = await readFile(out);
    assert.equal(printed.descriptor.digest, sha256(bytes));
    assert.equal(printed.descriptor.digest, printed.diffId);
    assert.equal(printed.descriptor.mediaType, "application/vnd.oci.image.layer.v1.tar");
  });

  const zstd = zstdCalls();
  it(
    "calls" in zstd
      ? "--compression zstd: a zstd blob (the addon is built) with the same diff_id as gzip"
      : "--compression zstd: a clear UNSUPPORTED_COMPRESSION error (the addon is not built), no file",
    async () => {
      const src = await source();
      const { result, out } = await create(src, ["--compression", "zstd"]);
      if ("error" in zstd) {
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /\[UNSUPPORTED_COMPRESSION\]/);
        assert.doesNotMatch(result.stderr, /\n\s+at /);
        assert.deepEqual(await readdir(join(out, "..")), [], "no output, no partial file");
        return;
      }
      assert.equal(result.code, 0, result.stderr);
      const printed = JSON.parse(result.stdout.toString()) as Created;
      const bytes = await readFile(out);
      assert.deepEqual([...bytes.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
      assert.equal(printed.descriptor.mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
      assert.equal(printed.descriptor.digest, sha256(bytes));
      const { stdout: tar } = await exec("zstd", ["-dc", out], { encoding: "buffer", maxBuffer: 1 << 26 });
      assert.equal(printed.diffId, sha256(tar));
      const gzip = JSON.parse((await create(src)).result.stdout.toString()) as Created;
      assert.equal(printed.diffId, gzip.diffId);
    },
  );

  it("SOURCE_DATE_EPOCH from the environment pins every time; --timestamps clamp keeps older ones", async () => {
    const src = await source();
    const pinned = await create(src, [], { SOURCE_DATE_EPOCH: "1200000000" });
    assert.equal(pinned.result.code, 0, pinned.result.stderr);
    const pinnedHeaders = await headers(gunzipSync(await readFile(pinned.out)));
    assert.deepEqual(
      pinnedHeaders.map((h) => h.mtime),
      [1_200_000_000, 1_200_000_000, 1_200_000_000, 1_200_000_000],
    );
    const clamped = await create(src, ["--timestamps", "clamp", "--source-date-epoch", "1200000000"]);
    const clampedHeaders = await headers(gunzipSync(await readFile(clamped.out)));
    assert.equal(clampedHeaders.find((h) => h.path === "app/run.sh")?.mtime, 1_000_000_000, "older: kept");
    assert.equal(clampedHeaders.find((h) => h.path === "app/")?.mtime, 1_200_000_000, "newer: clamped");
  });

  it("refuses option values it does not know, with exit 2 USAGE", async () => {
    const src = await source();
    for (const args of [
      ["--compression", "bogus"],
      ["--level", "abc"],
      ["--level", "12"],
      ["--timestamps", "bogus", "--source-date-epoch", "5"],
      ["--ownership", "bogus"],
    ]) {
      const { result, out } = await create(src, args);
      assert.equal(result.code, 2, `${args.join(" ")}: exit ${result.code} ${result.stderr}`);
      assert.match(result.stderr, /\[USAGE\]/, args.join(" "));
      assert.deepEqual(await readdir(join(out, "..")), [], `${args.join(" ")}: no file`);
    }
  });
});
