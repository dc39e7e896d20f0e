/**
 * RootfsApplier: OCI layer semantics (whiteouts, opaque directories, replacement of files by
 * directories and back, AUFS metadata) checked against exact trees and against umoci; then a corpus
 * of malicious layers, each generated here, each refused (UNSAFE_PATH, or CORRUPT_LAYER for a lying
 * size) with the entry and the layer named, with nothing written outside the target — through the
 * library (unpackImage → RootfsApplier) and through `roci unpack` (exit 5).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { shortDigest } from "../digest/digest.ts";
import { isRociError, RociError } from "../errors.ts";
import { readTar } from "../tar/reader.ts";
import {
  buildImage,
  diffTrees,
  dir,
  file,
  hardlink,
  layerTar,
  newLayout,
  opaque,
  openImage,
  rawTar,
  scanTree,
  symlink,
  tempDir,
  treeSummary,
  whiteout,
} from "../test-support/images.ts";
import { NOBODY_UID, runRoci } from "../test-support/run.ts";
import { RootfsApplier } from "./apply.ts";
import { unpackImage } from "./unpack.ts";

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;

/** Applies uncompressed layer tars in order onto `root` with RootfsApplier; returns the warnings. */
async function applyLayers(root: string, tars: readonly Buffer[]): Promise<string[]> {
  const warnings: string[] = [];
  const applier = new RootfsApplier(root, { onWarning: (message) => warnings.push(message) });
  for (const [index, tar] of tars.entries()) {
    await applier.apply(readTar(Readable.from([tar])), `layer ${index + 1}`);
  }
  return warnings;
}

async function appliedTree(tars: readonly Buffer[]): Promise<Record<string, string>> {
  const root = join(await tempDir(), "rootfs");
  await mkdir(root);
  await applyLayers(root, tars);
  return treeSummary(await scanTree(root));
}

// ─── semantics ───────────────────────────────────────────────────────────────────────────────────

async function threeLayers(): Promise<Buffer[]> {
  return [
    await layerTar([
      dir("a"),
      file("a/f1", "1"),
      file("a/f2", "2"),
      dir("a/sub"),
      file("a/sub/deep", "deep"),
      dir("b"),
      file("b/x", "x"),
      file("c", "c1"),
      dir("d"),
      file("d/child", "child"),
      dir("keep"),
      file("keep/k", "k"),
      dir("o1"),
      file("o1/lower1", "l"),
      dir("o1/lowersub"),
      file("o1/lowersub/x", "x"),
      dir("o2"),
      file("o2/lower2", "l"),
      dir("s"),
      file("s/lower", "l"),
      dir("t"),
      file("t/x", "lower x"),
      dir("w"),
      dir("w/gone"),
      file("w/gone/inner", "inner"),
    ]),
    await layerTar([
      file(".wh..wh.plnk"), // AUFS metadata: ignored
      dir("a"),
      whiteout("a", "f1"),
      file("a/.wh..wh.aufs"), // AUFS metadata: ignored
      dir("c"), // a file replaced by a directory
      file("c/inside", "inside"),
      file("d", "d2"), // a directory replaced by a file
      dir("o1"),
      opaque("o1"), // opaque marker before the layer's children
      file("o1/new1", "new1"),
      dir("o2"),
      file("o2/new2", "new2"),
      opaque("o2"), // … and after them: the layer's own children stay
      dir("s"),
      file("s/mine", "mine"),
      whiteout("s", "mine"), // same layer: does not hide the layer's own file
      whiteout("s", "lower"), // but hides the lower one
      dir("t"),
      whiteout("t", "x"), // whiteout first, then the layer's own x
      file("t/x", "upper x"),
      dir("w"),
      whiteout("w", "gone"), // a whole directory
      whiteout("", "nonexistent"), // nothing to hide: fine
    ]),
    await layerTar([
      dir("a"),
      whiteout("a", "sub"),
      whiteout("", "b"), // a directory whited out, then recreated in the same layer
      dir("b"),
      file("b/y", "y"),
      file("c", "c3"), // the directory replaced by a file again
      dir("d"), // the file replaced by a directory again: the old children stay gone
      file("d/again", "again"),
      dir("o1"),
      whiteout("o1", "new1"),
      file("o1/l3", "l3"),
    ]),
  ];
}

const threeLayersResult = {
  a: "dir 0755",
  "a/f2": 'file 0644 "2"',
  b: "dir 0755",
  "b/y": 'file 0644 "y"',
  c: 'file 0644 "c3"',
  d: "dir 0755",
  "d/again": 'file 0644 "again"',
  keep: "dir 0755",
  "keep/k": 'file 0644 "k"',
  o1: "dir 0755",
  "o1/l3": 'file 0644 "l3"',
  o2: "dir 0755",
  "o2/new2": 'file 0644 "new2"',
  s: "dir 0755",
  "s/mine": 'file 0644 "mine"',
  t: "dir 0755",
  "t/x": 'file 0644 "upper x"',
  w: "dir 0755",
};

describe("whiteout and opaque semantics", () => {
  it("three layers: files, directories, replacements both ways, opaque before and after children", async () => {
    assert.deepEqual(await appliedTree(await threeLayers()), threeLayersResult);
  });

  it("after each layer, exactly", async () => {
    const [l1, l2] = await threeLayers();
    assert.deepEqual(await appliedTree([l1!, l2!]), {
      a: "dir 0755",
      "a/f2": 'file 0644 "2"',
      "a/sub": "dir 0755",
      "a/sub/deep": 'file 0644 "deep"',
      b: "dir 0755",
      "b/x": 'file 0644 "x"',
      c: "dir 0755",
      "c/inside": 'file 0644 "inside"',
      d: 'file 0644 "d2"',
      keep: "dir 0755",
      "keep/k": 'file 0644 "k"',
      o1: "dir 0755",
      "o1/new1": 'file 0644 "new1"',
      o2: "dir 0755",
      "o2/new2": 'file 0644 "new2"',
      s: "dir 0755",
      "s/mine": 'file 0644 "mine"',
      t: "dir 0755",
      "t/x": 'file 0644 "upper x"',
      w: "dir 0755",
    });
  });

  it("matches umoci on the same three layers (all attributes and mtimes)", {
    skip: !isRoot && "needs root",
  }, async () => {
    const image = await buildImage(await newLayout(), { layers: await threeLayers() });
    const area = await tempDir();
    const rootfs = join(area, "roci");
    await mkdir(rootfs);
    await applyLayers(rootfs, await threeLayers());
    await exec("umoci", ["unpack", "--image", image.ref, join(area, "umoci")]);
    const umoci = await scanTree(join(area, "umoci", "rootfs"));
    const roci = await scanTree(rootfs);
    assert.deepEqual(diffTrees(umoci, roci, { ignoreMtimeOf: ["."] }), []);
    assert.deepEqual(treeSummary(umoci), threeLayersResult);
  });

  it("the layer's own directory attributes win, and a replaced directory's attributes do not linger", async () => {
    const tree = await appliedTree([
      await layerTar([dir("x", { mode: 0o700, uid: 1, gid: 2, mtime: 100 }), file("x/f", "f")]),
      await layerTar([dir("x", { mode: 0o750, uid: 3, gid: 4, mtime: 200 })]),
    ]);
    assert.deepEqual(tree, { x: "dir 0750", "x/f": 'file 0644 "f"' });
    if (isRoot) {
      const root = join(await tempDir(), "r");
      await mkdir(root);
      await applyLayers(root, [
        await layerTar([dir("x", { mode: 0o700, uid: 1, gid: 2, mtime: 100 }), file("x/f", "f")]),
        await layerTar([dir("x", { mode: 0o750, uid: 3, gid: 4, mtime: 200 })]),
      ]);
      const x = (await scanTree(root)).get("x")!;
      assert.deepEqual([x.uid, x.gid, x.mtimeNs], [3, 4, 200_000_000_000n]);
    }
  });

  it("pre-1970 mtimes are applied", async () => {
    const root = join(await tempDir(), "rootfs");
    await mkdir(root);
    await applyLayers(root, [
      await layerTar([file("old", "o", { mtime: -86_400 }), dir("olddir", { mtime: -1 })]),
    ]);
    const tree = await scanTree(root);
    assert.equal(tree.get("old")?.mtimeNs, -86_400_000_000_000n);
    assert.equal(tree.get("olddir")?.mtimeNs, -1_000_000_000n);
  });

  it("mtimes past 2242 (PAX, beyond the octal field) are applied", async () => {
    const root = join(await tempDir(), "rootfs");
    await mkdir(root);
    await applyLayers(root, [await layerTar([file("future", "f", { mtime: 15_000_000_000 })])]);
    assert.equal((await scanTree(root)).get("future")?.mtimeNs, 15_000_000_000_000_000_000n);
  });

  it("a whiteout never appears in the tree, whatever it names", async () => {
    const tree = await appliedTree([
      await layerTar([dir("a"), whiteout("a", "missing"), whiteout("", "also-missing"), opaque("a")]),
    ]);
    assert.deepEqual(tree, { a: "dir 0755" });
  });

  it("an opaque marker after the children hides the lower contents of a subdirectory the layer re-lists", async () => {
    const tree = await appliedTree([
      await layerTar([dir("o"), file("o/lower"), dir("o/sub"), file("o/sub/lowerkid", "lk")]),
      await layerTar([dir("o"), dir("o/sub"), file("o/sub/k", "k"), opaque("o")]),
    ]);
    assert.deepEqual(tree, { o: "dir 0755", "o/sub": "dir 0755", "o/sub/k": 'file 0644 "k"' });
  });

  it("an opaque marker before the children hides the lower contents of a re-listed subdirectory", async () => {
    const tree = await appliedTree([
      await layerTar([dir("o"), file("o/lower"), dir("o/sub"), file("o/sub/lowerkid", "lk")]),
      await layerTar([dir("o"), opaque("o"), dir("o/sub"), file("o/sub/k", "k")]),
    ]);
    assert.deepEqual(tree, { o: "dir 0755", "o/sub": "dir 0755", "o/sub/k": 'file 0644 "k"' });
  });

  it("the AUFS hard-link directory .wh..wh.plnk and its contents are not applied", async () => {
    const tree = await appliedTree([
      await layerTar([file("f", "f")]),
      await layerTar([dir(".wh..wh.plnk", { mode: 0o700 }), file(".wh..wh.plnk/123.456", "aufs")]),
    ]);
    assert.deepEqual(tree, { f: 'file 0644 "f"' });
  });
});

// ─── malicious corpus ────────────────────────────────────────────────────────────────────────────

interface Area {
  /** The directory holding everything of one case. */
  root: string;
  target: string;
  /** A directory next to the target, with files: escape attempts are pointed at it. */
  sentinel: string;
  /** A unique name, for paths under the real /etc that must not appear. */
  unique: string;
}

async function newArea(): Promise<Area> {
  const root = await tempDir("roci-malicious-");
  const sentinel = join(root, "sentinel");
  await mkdir(join(sentinel, "d"), { recursive: true });
  await writeFile(join(sentinel, "keep"), "keep");
  await writeFile(join(sentinel, "d", "file"), "file");
  const target = join(root, "target");
  await mkdir(target);
  return { root, target, sentinel, unique: `roci-test-${randomBytes(6).toString("hex")}` };
}

interface MaliciousCase {
  name: string;
  layers: (area: Area) => Promise<Buffer[]> | Buffer[];
  code: "UNSAFE_PATH" | "CORRUPT_LAYER";
  /** The entry path the error names (as recorded in the tar). */
  entry: (area: Area) => string;
  /** 1-based index of the layer that is refused. */
  layer: number;
  /** Host paths that must not exist afterwards. */
  host?: (area: Area) => string[];
}

const gnuLongDotDot = `${"a/".repeat(60)}${"../".repeat(70)}gnu-escape`;

const corpus: MaliciousCase[] = [
  {
    name: "../ traversal",
    layers: () => [rawTar([{ name: "../escape", data: "x" }])],
    code: "UNSAFE_PATH",
    entry: () => "../escape",
    layer: 1,
  },
  {
    name: "traversal in the middle (a/../../escape)",
    layers: () => [
      rawTar([
        { name: "a/", typeflag: "5" },
        { name: "a/../../escape", data: "x" },
      ]),
    ],
    code: "UNSAFE_PATH",
    entry: () => "a/../../escape",
    layer: 1,
  },
  {
    name: "absolute path /etc/x",
    layers: (a) => [rawTar([{ name: `/etc/${a.unique}`, data: "x" }])],
    code: "UNSAFE_PATH",
    entry: (a) => `/etc/${a.unique}`,
    layer: 1,
    host: (a) => [`/etc/${a.unique}`],
  },
  {
    name: "symlink evil -> / then a file evil/etc/x",
    layers: async (a) => [await layerTar([symlink("evil", "/"), file(`evil/etc/${a.unique}`, "x")])],
    code: "UNSAFE_PATH",
    entry: (a) => `evil/etc/${a.unique}`,
    layer: 1,
    host: (a) => [`/etc/${a.unique}`],
  },
  {
    name: "symlink chain across two layers (a -> b, b -> outside; then a/x)",
    layers: async (a) => [
      await layerTar([symlink("a", "b"), symlink("b", a.sentinel)]),
      await layerTar([file("a/x", "x")]),
    ],
    code: "UNSAFE_PATH",
    entry: () => "a/x",
    layer: 2,
  },
  {
    name: "relative symlink out of the root, then a file through it",
    layers: async () => [await layerTar([symlink("up", "../sentinel"), file("up/planted", "x")])],
    code: "UNSAFE_PATH",
    entry: () => "up/planted",
    layer: 1,
  },
  {
    name: "hard link to /etc/passwd",
    layers: () => [rawTar([{ name: "h", typeflag: "1", linkname: "/etc/passwd" }])],
    code: "UNSAFE_PATH",
    entry: () => "h",
    layer: 1,
  },
  {
    name: "hard link to ../../etc/passwd",
    layers: () => [rawTar([{ name: "h", typeflag: "1", linkname: "../../etc/passwd" }])],
    code: "UNSAFE_PATH",
    entry: () => "h",
    layer: 1,
  },
  {
    name: "hard link to a symlink that escapes",
    layers: async () => [
      await layerTar([dir("x"), symlink("x/esc", "../../sentinel/keep"), hardlink("h", "x/esc")]),
    ],
    code: "UNSAFE_PATH",
    entry: () => "h",
    layer: 1,
  },
  {
    name: "hard link through a symlinked parent (evil -> /, h -> evil/etc/passwd)",
    layers: async () => [await layerTar([symlink("evil", "/"), hardlink("h", "evil/etc/passwd")])],
    code: "UNSAFE_PATH",
    entry: () => "h",
    layer: 1,
  },
  {
    name: "whiteout through a symlinked parent (would delete outside)",
    layers: async (a) => [
      await layerTar([symlink("s", a.sentinel)]),
      await layerTar([whiteout("s", "keep")]),
    ],
    code: "UNSAFE_PATH",
    entry: () => "s/.wh.keep",
    layer: 2,
  },
  {
    name: "opaque marker through a symlinked parent (would empty a directory outside)",
    layers: async (a) => [await layerTar([symlink("s", a.sentinel)]), await layerTar([opaque("s")])],
    code: "UNSAFE_PATH",
    entry: () => "s/.wh..wh..opq",
    layer: 2,
  },
  {
    name: "PAX path override to ../x",
    layers: () => [rawTar([{ name: "innocent", pax: { path: "../pax-escape" }, data: "x" }])],
    code: "UNSAFE_PATH",
    entry: () => "../pax-escape",
    layer: 1,
  },
  {
    name: "PAX linkpath override of a hard link to ../x",
    layers: () => [
      rawTar([
        { name: "f", data: "f" },
        { name: "h", typeflag: "1", linkname: "f", pax: { linkpath: "../sentinel/keep" } },
      ]),
    ],
    code: "UNSAFE_PATH",
    entry: () => "h",
    layer: 1,
  },
  {
    name: "GNU long name with ..",
    layers: () => [rawTar([{ name: "innocent", gnuLongName: gnuLongDotDot, data: "x" }])],
    code: "UNSAFE_PATH",
    entry: () => gnuLongDotDot,
    layer: 1,
  },
  {
    name: "a .wh. entry targeting .. (.wh...)",
    layers: () => [rawTar([{ name: "sub/", typeflag: "5" }, { name: "sub/.wh..." }])],
    code: "UNSAFE_PATH",
    entry: () => "sub/.wh...",
    layer: 1,
  },
  {
    name: "a .wh. entry targeting .. at the root",
    layers: () => [rawTar([{ name: ".wh..." }])],
    code: "UNSAFE_PATH",
    entry: () => ".wh...",
    layer: 1,
  },
  {
    name: "a bare .wh.",
    layers: () => [rawTar([{ name: ".wh." }])],
    code: "UNSAFE_PATH",
    entry: () => ".wh.",
    layer: 1,
  },
  {
    name: "a 10 GB entry in a tiny truncated stream",
    layers: () => [
      rawTar([{ name: "huge", pax: { size: String(10 * 1024 ** 3) }, data: "tiny", unpadded: true }], {
        trailer: false,
      }),
    ],
    code: "CORRUPT_LAYER",
    entry: () => "huge",
    layer: 1,
  },
];

/** Everything of the area but the target, to prove nothing was written (or removed) outside it. */
const outside = (area: Area) => scanTree(area.root, { exclude: ["target"] });

describe("malicious layers", () => {
  for (const c of corpus) {
    it(`library: ${c.name} → ${c.code}, nothing outside the target`, async () => {
      const area = await newArea();
      const image = await buildImage(await newLayout(), { layers: await c.layers(area) });
      const { store, manifest, config } = await openImage(image);
      const before = await outside(area);
      const layerName = `layer ${c.layer}/${image.layers.length} (${shortDigest(image.layers[c.layer - 1]!.digest)})`;
      await assert.rejects(unpackImage(store, manifest, config, area.target), (error: unknown) => {
        assert.ok(error instanceof RociError, String(error));
        assert.equal(error.code, c.code, error.message);
        assert.ok(error.message.includes(JSON.stringify(c.entry(area))), `names the entry: ${error.message}`);
        if (c.code === "UNSAFE_PATH")
          assert.ok(error.message.includes(layerName), `names the layer: ${error.message}`);
        return true;
      });
      assert.deepEqual(diffTrees(before, await outside(area)), []);
      for (const path of c.host?.(area) ?? []) assert.equal(existsSync(path), false, path);

      // RootfsApplier alone onto a target that already holds a file (it then checks the
      // filesystem rather than its bookkeeping of an empty target): the same refusal.
      const second = await newArea();
      await writeFile(join(second.target, "pre-existing"), "");
      const secondBefore = await outside(second);
      const applier = new RootfsApplier(second.target);
      const tars = await c.layers(second);
      await assert.rejects(
        (async () => {
          for (const [index, tar] of tars.entries()) {
            await applier.apply(readTar(Readable.from([tar])), `layer ${index + 1} of the test`);
          }
        })(),
        (error: unknown) => {
          assert.ok(error instanceof RociError, String(error));
          assert.equal(error.code, c.code, error.message);
          if (c.code === "UNSAFE_PATH")
            assert.ok(error.message.startsWith(`layer ${c.layer} of the test: `), error.message);
          return true;
        },
      );
      assert.deepEqual(diffTrees(secondBefore, await outside(second)), []);
      for (const path of c.host?.(second) ?? []) assert.equal(existsSync(path), false, path);
    });
  }

  it(`CLI: every case exits 5 with the code, entry and layer on stderr, nothing outside`, async () => {
    for (const c of corpus) {
      const area = await newArea();
      const image = await buildImage(await newLayout(), { layers: await c.layers(area) });
      const before = await outside(area);
      const result = await runRoci(["unpack", image.ref, area.target]);
      assert.equal(result.code, 5, `${c.name}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`\\[${c.code}\\]`), c.name);
      assert.ok(result.stderr.includes(JSON.stringify(c.entry(area))), `${c.name}: ${result.stderr}`);
      if (c.code === "UNSAFE_PATH")
        assert.ok(
          result.stderr.includes(`layer ${c.layer}/${image.layers.length}`),
          `${c.name}: ${result.stderr}`,
        );
      assert.doesNotMatch(result.stderr, /INTERNAL|\n\s+at /, `${c.name}: no stack trace`);
      assert.deepEqual(diffTrees(before, await outside(area)), [], c.name);
      for (const path of c.host?.(area) ?? []) assert.equal(existsSync(path), false, path);
    }
  });

  it("a truncated entry's CORRUPT_LAYER names the layer too", async () => {
    const c = corpus.find((entry) => entry.code === "CORRUPT_LAYER")!;
    const area = await newArea();
    const image = await buildImage(await newLayout(), { layers: await c.layers(area) });
    const result = await runRoci(["unpack", image.ref, area.target]);
    assert.match(result.stderr, /CORRUPT_LAYER/);
    assert.ok(result.stderr.includes(`layer 1/1 (${shortDigest(image.layers[0]!.digest)})`), result.stderr);
  });

  it("library, RootfsApplier alone: the error names the caller's layer name", async () => {
    const area = await newArea();
    await assert.rejects(
      applyLayers(area.target, [await layerTar([file("ok", "ok")]), rawTar([{ name: "../x", data: "x" }])]),
      (error: unknown) =>
        isRociError(error, "UNSAFE_PATH") && error.message.startsWith('layer 2: entry "../x" refused'),
    );
    assert.deepEqual(treeSummary(await scanTree(area.target)), { ok: 'file 0644 "ok"' });
  });

  it("device nodes as uid 65534: skipped with a warning, not an error", {
    skip: !isRoot && "needs root",
  }, async () => {
    const image = await buildImage(await newLayout(), {
      layers: [
        await layerTar([
          dir("dev"),
          { path: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 },
          { path: "dev/sda", type: "block", mode: 0o660, devmajor: 8, devminor: 0 },
          file("dev/regular", "r"),
        ]),
      ],
    });
    const area = await tempDir();
    await chown(area, NOBODY_UID, NOBODY_UID);
    const result = await runRoci(["unpack", image.ref, join(area, "t")], { asNobody: true });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /warning: layer 1\/1 \(sha256:[0-9a-f]{12}\): skipped device nodes \(dev\/null/,
    );
    assert.equal(result.stderr.match(/skipped device nodes/g)?.length, 1, "said once");
    assert.deepEqual(treeSummary(await scanTree(join(area, "t"))), {
      dev: "dir 0755",
      "dev/regular": 'file 0644 "r"',
    });
  });
});

describe("symlinks already in the tree are replaced, never written through", () => {
  it("a file over a symlink to outside replaces the symlink", async () => {
    const area = await newArea();
    const before = await outside(area);
    await applyLayers(area.target, [
      await layerTar([symlink("x", join(area.sentinel, "keep"))]),
      await layerTar([file("x", "new")]),
    ]);
    assert.deepEqual(treeSummary(await scanTree(area.target)), { x: 'file 0644 "new"' });
    assert.equal(await readFile(join(area.sentinel, "keep"), "utf8"), "keep");
    assert.deepEqual(diffTrees(before, await outside(area)), []);
  });

  it("a directory over a symlink to outside replaces the symlink", async () => {
    const area = await newArea();
    const before = await outside(area);
    await applyLayers(area.target, [
      await layerTar([symlink("d", area.sentinel)]),
      await layerTar([dir("d"), file("d/f", "f")]),
    ]);
    assert.deepEqual(treeSummary(await scanTree(area.target)), { d: "dir 0755", "d/f": 'file 0644 "f"' });
    assert.deepEqual(diffTrees(before, await outside(area)), []);
  });

  it("a hard link to an absolute symlink links the symlink itself, not the host file", async () => {
    const area = await newArea();
    await applyLayers(area.target, [await layerTar([symlink("p", "/etc/passwd"), hardlink("h", "p")])]);
    const tree = await scanTree(area.target);
    assert.equal(tree.get("h")?.type, "symlink");
    assert.equal(await readlink(join(area.target, "h")), "/etc/passwd");
  });
});

describe("the same semantics through unpackImage (into an empty target)", () => {
  it("three layers: the same tree as RootfsApplier onto a plain directory", async () => {
    const image = await buildImage(await newLayout(), { layers: await threeLayers() });
    const { store, manifest, config } = await openImage(image);
    const target = join(await tempDir(), "target");
    await unpackImage(store, manifest, config, target);
    assert.deepEqual(treeSummary(await scanTree(target)), threeLayersResult);
  });
});
