/**
 * `roci unpack` against umoci 0.4.7 as the oracle: the fixtures (umoci- and skopeo-made), a
 * generated "multi-file" image (hard links, symlinks, setuid, FIFO, devices, deep, Unicode and PAX
 * names, whiteouts, opaque directories) and, with ROCI_TEST_DEBIAN=1, a Debian minbase image must
 * unpack into identical trees: path, type, mode, owner, size, content, symlink target, device
 * numbers, hard-link groups and mtimes. Then verification (digest and diff_id mismatches leave the
 * incomplete marker), the bundle's config.json, the non-empty target rule, rootless unpacks as
 * uid 65534, and `roci export` (a flattened tar equal to the unpacked tree).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream, existsSync } from "node:fs";
import { chown, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { promisify } from "node:util";
import { isRociError } from "../errors.ts";
import { readTar } from "../tar/reader.ts";
import { copyFixture, fixtures, repoRoot } from "../test-support/fixtures.ts";
import {
  type BuiltImage,
  blobPath,
  buildImage,
  diffTrees,
  dir,
  file,
  formatTree,
  hardlink,
  layerTar,
  multiFileLayers,
  newLayout,
  opaque,
  openImage,
  scanTree,
  seededText,
  symlink,
  type Tree,
  tempDir,
  treeSummary,
  whiteout,
} from "../test-support/images.ts";
import { readIndex, tagged, writeIndex } from "../test-support/layout-edit.ts";
import { NOBODY_UID, runRoci } from "../test-support/run.ts";
import { incompleteMarker, unpackImage } from "./unpack.ts";

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const needsRoot = !isRoot && "needs root (umoci unpack keeps owners and devices only as root)";

async function umociUnpack(ref: string, bundle: string): Promise<void> {
  try {
    await exec("umoci", ["unpack", "--image", ref, bundle], { maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const e = error as Error & { stderr?: string };
    throw new Error(`umoci unpack ${ref} failed: ${e.stderr ?? e.message}`);
  }
}

async function rociUnpack(args: string[]): Promise<void> {
  const result = await runRoci(["unpack", ...args]);
  assert.equal(result.code, 0, `roci unpack ${args.join(" ")}: ${result.stderr}`);
}

interface Comparison {
  roci: Tree;
  umoci: Tree;
  /** Everything but directory mtimes (the rootfs directory's own mtime only with `rootMtime`). */
  differences: string[];
  /** Directory mtimes that differ, on their own. */
  directoryMtimes: string[];
  rociConfig: RuntimeConfig;
  umociConfig: RuntimeConfig;
}

interface RuntimeConfig {
  process: { args: string[]; env: string[]; cwd: string; user: { uid: number; gid: number } };
  root: { path: string };
}

/**
 * Unpacks `rociRef` with `roci unpack --bundle` and `umociRef` with `umoci unpack` (two names for the
 * same image, since umoci cannot select a platform or read zstd) and compares the rootfs trees.
 */
async function compareWithUmoci(
  rociRef: string,
  umociRef: string,
  rociArgs: string[] = [],
  options: { rootMtime?: boolean; nonEmptyTarget?: boolean } = {},
): Promise<Comparison> {
  const area = await tempDir("roci-vs-umoci-");
  if (options.nonEmptyTarget) {
    // --force into a bundle directory that holds something: the applier checks the filesystem
    // (lstat) instead of trusting its own bookkeeping of an empty target.
    await mkdir(join(area, "roci"));
    await writeFile(join(area, "roci", "not-empty"), "");
    rociArgs = ["--force", ...rociArgs];
  }
  await rociUnpack(["--bundle", ...rociArgs, rociRef, join(area, "roci")]);
  await umociUnpack(umociRef, join(area, "umoci"));
  const [roci, umoci] = await Promise.all([
    scanTree(join(area, "roci", "rootfs")),
    scanTree(join(area, "umoci", "rootfs")),
  ]);
  // Without a "./" entry in the layers, the rootfs directory's mtime is the unpack's own (umoci
  // leaves 0, roci the time it made the directory): compared only for images that set it.
  const all = diffTrees(umoci, roci, { ignoreMtimeOf: options.rootMtime ? [] : ["."] });
  const isDirMtime = (line: string) => line.includes(": mtime ") && line.endsWith("(dir)");
  const readConfig = async (name: string) =>
    JSON.parse(await readFile(join(area, name, "config.json"), "utf8")) as RuntimeConfig;
  return {
    roci,
    umoci,
    differences: all.filter((line) => !isDirMtime(line)),
    directoryMtimes: all.filter(isDirMtime),
    rociConfig: await readConfig("roci"),
    umociConfig: await readConfig("umoci"),
  };
}

function assertSameTrees(comparison: Comparison, what: string): void {
  assert.deepEqual(
    comparison.differences,
    [],
    `${what}: roci and umoci trees differ (umoci ≠ roci):\n${comparison.differences.join("\n")}\n\nroci:\n${formatTree(comparison.roci)}`,
  );
  assert.ok(comparison.roci.size > 1, `${what}: the rootfs is not empty`);
}

describe("roci unpack matches umoci unpack", { skip: needsRoot }, () => {
  it("single (umoci-made, two layers): identical trees, mtimes included", async () => {
    const layout = await copyFixture("single");
    const c = await compareWithUmoci(`${layout}:v1`, `${layout}:v1`);
    assertSameTrees(c, "single");
    assert.deepEqual(c.directoryMtimes, []);
    const { layouts } = await fixtures();
    for (const [path, expected] of Object.entries(layouts.single.files)) {
      const node = c.roci.get(path);
      assert.ok(node, `${path} is unpacked`);
      assert.equal(node.type, expected.type, path);
      if (expected.type === "symlink") assert.equal(node.target, expected.target, path);
      else assert.equal(node.mode, expected.mode, path);
    }
    assert.equal(c.roci.size - 1, Object.keys(layouts.single.files).length, "nothing more");
  });

  it("multi (skopeo-made index): the linux/amd64 image, selected with --platform", async () => {
    const { layouts } = await fixtures();
    const layout = await copyFixture("multi");
    const amd64 = layouts.multi.platforms["linux/amd64"].manifest;
    // umoci 0.4.7 cannot pick a platform out of an index: tag the amd64 manifest for it.
    await writeIndex(layout, [...(await readIndex(layout)).manifests, tagged({ ...amd64 }, "amd64-only")]);
    const c = await compareWithUmoci(`${layout}:multi`, `${layout}:amd64-only`, [
      "--platform",
      "linux/amd64",
    ]);
    assertSameTrees(c, "multi linux/amd64");
    assert.deepEqual(c.directoryMtimes, []);
  });

  it("tagged:app (skopeo-made, a layer shared with base)", async () => {
    const layout = await copyFixture("tagged");
    const c = await compareWithUmoci(`${layout}:app`, `${layout}:app`);
    assertSameTrees(c, "tagged:app");
    assert.deepEqual(c.directoryMtimes, []);
  });

  it("tagged:zstd equals umoci's unpack of tagged:base (same diff_ids; umoci 0.4.7 reads no zstd)", async () => {
    const { layouts } = await fixtures();
    const layout = await copyFixture("tagged");
    const diffIds = async (digest: string) =>
      (JSON.parse(await readFile(blobPath(layout, digest), "utf8")) as { rootfs: { diff_ids: string[] } })
        .rootfs.diff_ids;
    assert.deepEqual(
      await diffIds(layouts.tagged.images.zstd.config.digest),
      await diffIds(layouts.tagged.images.base.config.digest),
    );
    assert.match(layouts.tagged.images.zstd.layers[0]!.mediaType, /zstd$/);
    const c = await compareWithUmoci(`${layout}:zstd`, `${layout}:base`);
    assertSameTrees(c, "tagged:zstd");
    assert.deepEqual(c.directoryMtimes, []);
  });

  describe("a generated multi-file image", () => {
    let image: BuiltImage;
    let comparison: Comparison;
    before(async () => {
      image = await buildImage(await newLayout(), {
        layers: await multiFileLayers(),
        tag: "multi-file",
        settings: { Cmd: ["/bin/sh"] },
      });
      comparison = await compareWithUmoci(image.ref, image.ref);
    });

    it("unpacked with --force into a non-empty directory: identical to umoci, directory mtimes included", async () => {
      const c = await compareWithUmoci(image.ref, image.ref, [], { nonEmptyTarget: true });
      assertSameTrees(c, "multi-file, non-empty target");
      assert.deepEqual(c.directoryMtimes, []);
      assert.equal(c.roci.get("etc/localtime")?.target, "/usr/share/zoneinfo/UTC");
      assert.equal(c.roci.get("srv/www")?.text, "www");
    });

    it("unpacks like umoci: every path, type, mode, owner, size, content, target, device, link group, file mtime", {}, () => {
      assertSameTrees(comparison, "multi-file");
      const r = comparison.roci;
      // Spot checks that the image really has what it is meant to exercise.
      assert.equal(r.get("bin/sh")?.linkGroup, "bin/sh");
      assert.equal(r.get("bin/sh-hard1")?.linkGroup, "bin/sh");
      assert.equal(r.get("etc/sh-from-lower")?.linkGroup, "bin/sh");
      assert.equal(r.has("bin/sh-hard2"), false);
      assert.equal(r.get("usr/bin/su")?.mode, "4755");
      assert.equal(r.get("usr/bin/wall")?.mode, "2755");
      assert.equal(r.get("tmp")?.mode, "1777");
      assert.equal(r.get("run/fifo")?.type, "fifo");
      assert.equal(r.get("dev/null")?.rdev, "1:3");
      assert.equal(r.get("dev/loop9")?.type, "block");
      assert.equal(r.get("usr/bin/owned")?.uid, 1000);
      assert.equal(r.get("etc/localtime")?.target, "/usr/share/zoneinfo/UTC");
      assert.equal(r.get(`long/${"d".repeat(120)}/${"f".repeat(200)}`)?.text, "long\n");
      assert.equal(r.get("unicode/日本語/ファイル")?.text, "x");
      assert.equal(r.get("replace/was-dir")?.type, "file");
      assert.equal(r.get("replace/was-file")?.type, "dir");
      assert.deepEqual(
        [...r.keys()].filter((p) => p.startsWith("opq/")),
        ["opq/upper"],
      );
      assert.equal(r.has("gone"), false);
      assert.equal(r.has("deep/d0/d1/d2"), false);
      assert.equal(r.has("etc/empty"), false);
    });

    it("leaves the same directory mtimes as umoci", async () => {
      // Every directory the upper layer changes is listed in it, so its mtime is the listed one.
      assert.deepEqual(comparison.directoryMtimes, []);
    });

    it("writes the same process args, cwd and user as umoci into config.json", () => {
      const { rociConfig: r, umociConfig: u } = comparison;
      assert.deepEqual(r.process.args, u.process.args);
      assert.deepEqual(r.process.args, ["/bin/sh"]);
      assert.equal(r.process.cwd, u.process.cwd);
      assert.deepEqual(r.process.user, u.process.user);
      assert.equal(r.root.path, "rootfs");
    });
  });

  it("keeps directory mtimes when an upper layer changes a directory it does not list (as umoci does)", async () => {
    const lower = await layerTar([dir("a"), file("a/f", "f"), file("a/g", "g"), dir("b")]);
    const upper = await layerTar([whiteout("a", "f"), file("b/new", "new")]);
    const image = await buildImage(await newLayout(), { layers: [lower, upper] });
    const c = await compareWithUmoci(image.ref, image.ref);
    assertSameTrees(c, "unlisted parents");
    assert.deepEqual(c.directoryMtimes, []);
  });

  it("applies a layer's root entry (./) to the rootfs as umoci does", async () => {
    const tar = await layerTar([
      dir("./", { mode: 0o750, uid: 12, gid: 34, mtime: 1_111_111_111 }),
      dir("./etc"),
      file("./etc/f", "f"),
    ]);
    const image = await buildImage(await newLayout(), { layers: [tar] });
    const c = await compareWithUmoci(image.ref, image.ref, [], { rootMtime: true });
    assertSameTrees(c, "root entry");
    assert.deepEqual(c.directoryMtimes, []);
    const root = c.roci.get(".")!;
    assert.deepEqual(
      [root.mode, root.uid, root.gid, root.mtimeNs],
      ["0750", 12, 34, 1_111_111_111_000_000_000n],
    );
  });

  it("re-listing a directory after a removal keeps its contents (into an empty target)", async () => {
    const image = await buildImage(await newLayout(), {
      layers: [
        await layerTar([dir("a"), file("a/keep", "k"), file("x", "x")]),
        await layerTar([whiteout("", "x"), dir("a"), file("a/new", "n")]),
      ],
    });
    const c = await compareWithUmoci(image.ref, image.ref);
    assert.deepEqual(treeSummary(c.roci), {
      a: "dir 0755",
      "a/keep": 'file 0644 "k"',
      "a/new": 'file 0644 "n"',
    });
    assertSameTrees(c, "re-listed directory");
  });

  describe("Debian bookworm minbase (bench/make-debian.sh)", () => {
    const enabled = process.env.ROCI_TEST_DEBIAN === "1";
    let layout = "";
    before(
      async () => {
        if (!enabled) return;
        const { stdout } = await exec("bash", [join(repoRoot, "bench", "make-debian.sh")], {
          maxBuffer: 16 * 1024 * 1024,
        });
        layout = stdout.trim().split("\n").at(-1)!;
      },
      { timeout: 15 * 60 * 1000 },
    );

    it("unpacks like umoci", {
      skip:
        !enabled &&
        "set ROCI_TEST_DEBIAN=1 to build (mmdebstrap, network, cached in ~/.cache/roci-bench) and compare a Debian image",
      timeout: 120_000,
    }, async () => {
      const c = await compareWithUmoci(`${layout}:bookworm`, `${layout}:bookworm`);
      assertSameTrees(c, "debian");
      assert.deepEqual(c.directoryMtimes, []);
      assert.ok(c.roci.size > 1000, `a real distribution (${c.roci.size} paths)`);
      assert.ok(c.roci.get("usr/bin/bash")?.type === "file");
    });
  });
});

describe("verification", () => {
  it("a corrupt layer blob stops unpack with exit 5 DIGEST_MISMATCH and leaves the marker", async () => {
    const { layouts } = await fixtures();
    const target = join(await tempDir(), "target");
    const result = await runRoci(["unpack", `${layouts["corrupt-blob"].path}:v1`, target]);
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
    assert.ok(result.stderr.includes(layouts["corrupt-blob"].corrupt.digest), result.stderr);
    assert.ok(existsSync(join(target, incompleteMarker)), "the incomplete marker stays");
  });

  it("a config listing a wrong diff_id stops unpack with exit 5 DIGEST_MISMATCH and leaves the marker", async () => {
    const lower = await layerTar([dir("a"), file("a/f", "f")]);
    const upper = await layerTar([file("a/g", "g")]);
    const wrong = `sha256:${"0".repeat(64)}`;
    const layout = await newLayout();
    const good = await buildImage(layout, { layers: [lower, upper], tag: "good" });
    const image = await buildImage(layout, { layers: [lower, upper], diffIds: [good.diffIds[0]!, wrong] });
    const target = join(await tempDir(), "target");
    const result = await runRoci(["unpack", image.ref, target]);
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
    assert.match(result.stderr, /diff_id/);
    assert.ok(result.stderr.includes(good.diffIds[1]!), `names the real diff_id: ${result.stderr}`);
    assert.ok(existsSync(join(target, incompleteMarker)));
    // The library says the same.
    const { store, manifest, config } = await openImage(image);
    await assert.rejects(unpackImage(store, manifest, config, join(await tempDir(), "lib")), (error) =>
      isRociError(error, "DIGEST_MISMATCH"),
    );
  });

  it("the marker is gone after a good unpack, and only then", async () => {
    const image = await buildImage(await newLayout(), { layers: [await layerTar([file("f", "f")])] });
    const target = join(await tempDir(), "target");
    const { store, manifest, config } = await openImage(image);
    const result = await unpackImage(store, manifest, config, target);
    assert.equal(result.layers, 1);
    assert.deepEqual(await readdir(target), ["f"]);
  });

  it("a large gzip layer corrupted near its start fails with exit 5 DIGEST_MISMATCH", async () => {
    const tar = await layerTar([dir("a"), file("a/big", seededText(7, 4 << 20)), file("a/after", "x")]);
    const image = await buildImage(await newLayout(), { layers: [tar] });
    const blob = blobPath(image.layout, image.layers[0]!.digest);
    const bytes = await readFile(blob);
    bytes[100]! ^= 0xff;
    await writeFile(blob, bytes);
    const target = join(await tempDir(), "target");
    const result = await runRoci(["unpack", image.ref, target], { timeoutMs: 30_000 });
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
    assert.ok(existsSync(join(target, incompleteMarker)));
  });

  it("an uncompressed layer with a corrupt file body fails with exit 5 DIGEST_MISMATCH", async () => {
    const tar = await layerTar([dir("a"), file("a/big", seededText(8, 1 << 20)), file("a/after", "x")]);
    const image = await buildImage(await newLayout(), { layers: [{ tar, compression: "none" }] });
    const blob = blobPath(image.layout, image.layers[0]!.digest);
    const bytes = await readFile(blob);
    bytes[bytes.length >> 1]! ^= 0xff; // inside a/big's content: the tar still parses
    await writeFile(blob, bytes);
    const target = join(await tempDir(), "target");
    const result = await runRoci(["unpack", image.ref, target], { timeoutMs: 30_000 });
    assert.equal(result.code, 5, `exit ${result.code}: ${result.stderr}`);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
  });
});

it("an image with its own /.roci-unpack-incomplete fails clearly (or unpacks), never INTERNAL", async () => {
  const image = await buildImage(await newLayout(), {
    layers: [await layerTar([file(incompleteMarker, "the image's own"), file("f", "f")])],
  });
  const result = await runRoci(["unpack", image.ref, join(await tempDir(), "t")]);
  assert.doesNotMatch(result.stderr, /INTERNAL|\n\s+at /, result.stderr);
});

describe("--bundle", () => {
  it("writes config.json: args = entrypoint + cmd, env, cwd, user from the image", async () => {
    const { layouts } = await fixtures();
    const bundle = join(await tempDir(), "bundle");
    await rociUnpack(["--bundle", `${layouts.single.path}:v1`, bundle]);
    assert.deepEqual((await readdir(bundle)).sort(), ["config.json", "rootfs"]);
    const config = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as RuntimeConfig;
    const image = layouts.single.imageConfig;
    assert.deepEqual(config.process.args, [...image.Entrypoint, ...image.Cmd]);
    assert.deepEqual(config.process.args, ["/app/run.sh", "--greet", "world"]);
    assert.deepEqual(config.process.env, image.Env);
    assert.equal(config.process.cwd, "/app");
    assert.deepEqual(config.process.user, { uid: 1000, gid: 1000 });
    assert.equal(config.root.path, "rootfs");
  });

  it("agrees with umoci's config.json on args, cwd and user; env differs by umoci's TERM and HOME", {
    skip: needsRoot,
  }, async () => {
    const image = await buildImage(await newLayout(), {
      layers: [await layerTar([dir("srv"), dir("etc"), file("etc/passwd", "app:x:7:8::/:/bin/sh\n")])],
      settings: {
        Entrypoint: ["/bin/sh", "-c"],
        Cmd: ["echo hi"],
        Env: ["PATH=/bin", "A=1"],
        WorkingDir: "/srv",
        User: "app",
      },
    });
    const c = await compareWithUmoci(image.ref, image.ref);
    assertSameTrees(c, "config image");
    assert.deepEqual(c.rociConfig.process.args, ["/bin/sh", "-c", "echo hi"]);
    assert.deepEqual(c.rociConfig.process.args, c.umociConfig.process.args);
    assert.equal(c.rociConfig.process.cwd, "/srv");
    assert.equal(c.rociConfig.process.cwd, c.umociConfig.process.cwd);
    assert.deepEqual(c.rociConfig.process.user, { uid: 7, gid: 8 });
    assert.deepEqual(c.rociConfig.process.user, c.umociConfig.process.user);
    assert.deepEqual(c.rociConfig.process.env, ["PATH=/bin", "A=1"]);
    // umoci adds TERM=xterm, and HOME from the user's /etc/passwd entry; roci adds nothing.
    assert.deepEqual(
      c.umociConfig.process.env.filter((entry) => entry !== "TERM=xterm" && entry !== "HOME=/"),
      c.rociConfig.process.env,
    );
    assert.deepEqual(
      c.umociConfig.process.env.filter((entry) => !c.rociConfig.process.env.includes(entry)).sort(),
      ["HOME=/", "TERM=xterm"],
    );
  });
});

describe("the target directory", () => {
  let image: BuiltImage;
  before(async () => {
    image = await buildImage(await newLayout(), {
      layers: [await layerTar([dir("etc"), file("etc/hostname", "image\n"), file("keep", "image")])],
    });
  });

  it("not empty: exit 6 CONFLICT, nothing written", async () => {
    const target = join(await tempDir(), "target");
    await mkdir(target);
    await writeFile(join(target, "keep"), "mine");
    const result = await runRoci(["unpack", image.ref, target]);
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, /CONFLICT/);
    assert.deepEqual(await readdir(target), ["keep"]);
    assert.equal(await readFile(join(target, "keep"), "utf8"), "mine");
  });

  it("not empty with --force: unpacked over what is there", async () => {
    const target = join(await tempDir(), "target");
    await mkdir(target);
    await writeFile(join(target, "keep"), "mine");
    await writeFile(join(target, "other"), "other");
    const result = await runRoci(["unpack", "--force", image.ref, target]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((await readdir(target)).sort(), ["etc", "keep", "other"]);
    assert.equal(await readFile(join(target, "keep"), "utf8"), "image");
    assert.equal(await readFile(join(target, "etc", "hostname"), "utf8"), "image\n");
  });

  it("missing: created (parents too)", async () => {
    const target = join(await tempDir(), "a", "b", "target");
    const result = await runRoci(["unpack", image.ref, target]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((await readdir(target)).sort(), ["etc", "keep"]);
  });
});

/**
 * Unpacks `ref` into `target` (created, with a file in it unless `empty`, then `--force`: the
 * applier's lstat path rather than its bookkeeping of an empty target) and scans it, that file left out.
 */
async function unpackAndScan(
  ref: string,
  target: string,
  options: { asNobody?: boolean; empty?: boolean } = {},
): Promise<{ result: Awaited<ReturnType<typeof runRoci>>; tree: Tree }> {
  const args = ["unpack", ref, target];
  if (!options.empty) {
    await mkdir(target);
    await writeFile(join(target, "zz-not-empty"), "");
    if (options.asNobody) {
      await chown(target, NOBODY_UID, NOBODY_UID);
      await chown(join(target, "zz-not-empty"), NOBODY_UID, NOBODY_UID);
    }
    args.splice(1, 0, "--force");
  }
  const result = await runRoci(args, { asNobody: options.asNobody ?? false });
  assert.equal(result.code, 0, result.stderr);
  return { result, tree: await scanTree(target, { exclude: ["zz-not-empty"] }) };
}

describe("rootless (uid 65534)", { skip: !isRoot && "needs root to switch to uid 65534" }, () => {
  let image: BuiltImage;
  let asRoot: Tree;
  before(async () => {
    image = await buildImage(await newLayout(), { layers: await multiFileLayers() });
    asRoot = (await unpackAndScan(image.ref, join(await tempDir(), "root"))).tree;
  });

  async function checkRootless(empty: boolean): Promise<void> {
    const area = await tempDir();
    await chown(area, NOBODY_UID, NOBODY_UID);
    const { result, tree } = await unpackAndScan(image.ref, join(area, "target"), { asNobody: true, empty });
    assert.match(result.stdout.toString(), /\(rootless\)/);
    assert.match(result.stderr, /warning: .*ownership not applied \(rootless\)/);
    assert.match(
      result.stderr,
      /warning: .*skipped device nodes \(dev\/null and any others\): not running as root/,
    );
    assert.doesNotMatch(result.stderr, /error/);
    for (const node of tree.values()) {
      assert.deepEqual([node.uid, node.gid], [NOBODY_UID, NOBODY_UID]);
    }
    const withoutDevices = new Map(
      [...asRoot].filter(([, node]) => node.type !== "char" && node.type !== "block"),
    );
    assert.ok(withoutDevices.size < asRoot.size);
    assert.deepEqual(diffTrees(withoutDevices, tree, { owners: false, ignoreMtimeOf: ["."] }), []);
    assert.equal(tree.get("usr/bin/su")?.mode, "4755", "setuid kept");
    assert.equal(tree.get("run/fifo")?.type, "fifo", "a FIFO needs no privilege");
  }

  it("unpacks (--force) into a non-empty directory it owns: the root tree but owners and devices, with warnings", async () => {
    await checkRootless(false);
  });

  it("unpacks into a new directory: the same", async () => {
    await checkRootless(true);
  });

  it("an upper layer can add to (and white out in) a read-only directory of a lower layer", async () => {
    const lower = await layerTar([dir("ro", { mode: 0o555 }), file("ro/f", "f"), file("ro/old", "old")]);
    const upper = await layerTar([file("ro/g", "g"), whiteout("ro", "old")]);
    const ro = await buildImage(await newLayout(), { layers: [lower, upper] });
    const area = await tempDir();
    await chown(area, NOBODY_UID, NOBODY_UID);
    const result = await runRoci(["unpack", ro.ref, join(area, "t")], { asNobody: true });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(treeSummary(await scanTree(join(area, "t"))), {
      ro: "dir 0555",
      "ro/f": 'file 0644 "f"',
      "ro/g": 'file 0644 "g"',
    });
  });
});

// ─── export ─────────────────────────────────────────────────────────────────────────────────────

/** Three layers with whiteouts and opaque directories (every touched parent listed, no cross-layer links). */
async function whiteoutHeavyLayers(): Promise<Buffer[]> {
  return [
    await layerTar([
      dir("a"),
      file("a/f1", "1"),
      file("a/f2", "2"),
      dir("a/sub"),
      file("a/sub/deep", "deep"),
      dir("b"),
      file("b/x", "x"),
      hardlink("b/x-link", "b/x"),
      dir("o"),
      file("o/lower", "lower"),
      dir("o/sub"),
      file("o/sub/x", "x"),
      dir("w"),
      dir("w/gone"),
      file("w/gone/inner", "inner"),
      file("c", "c"),
      symlink("s", "a/f1"),
      dir("dev"),
      { path: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 },
    ]),
    await layerTar([
      dir("a"),
      whiteout("a", "f1"),
      file("a/f3", "3", { mode: 0o600, uid: 5, gid: 6 }),
      dir("o", { mode: 0o700 }),
      opaque("o"),
      file("o/upper", "upper"),
      dir("w"),
      whiteout("w", "gone"),
      whiteout("", "c"),
      dir("c"),
      file("c/now-a-dir", "d"),
      symlink("s", "a/f2"),
    ]),
    await layerTar([
      dir("a"),
      whiteout("a", "sub"),
      file("a/f2", "2 changed"),
      dir("b"),
      file("b/y", "y"),
      dir("o", { mode: 0o755 }),
      file("o/top", "top"),
      dir("w"),
      file("w/gone", "a file now"),
    ]),
  ];
}

describe("roci export", () => {
  let image: BuiltImage;
  let unpacked: Tree;
  before(async () => {
    image = await buildImage(await newLayout(), { layers: await whiteoutHeavyLayers() });
    unpacked = (await unpackAndScan(image.ref, join(await tempDir(), "unpacked"))).tree;
  });

  async function extract(tar: string): Promise<Tree> {
    const target = join(await tempDir(), "extracted");
    await mkdir(target);
    await exec("tar", ["-x", "-p", "--numeric-owner", "-f", tar, "-C", target]);
    return scanTree(target);
  }

  it("-o out.tar of a whiteout-heavy image extracts (GNU tar) to the unpacked tree", async () => {
    const out = join(await tempDir(), "out.tar");
    const result = await runRoci(["export", image.ref, "-o", out]);
    assert.equal(result.code, 0, result.stderr);
    const extracted = await extract(out);
    // Directory mtimes are checked in the tar headers below too.
    assert.deepEqual(diffTrees(unpacked, extracted, { mtime: "non-dir" }), []);
    for await (const entry of readTar(createReadStream(out))) {
      if (entry.header.type !== "dir") continue;
      const path = entry.header.path.replace(/\/$/, "");
      assert.equal(BigInt(entry.header.mtime) * 1_000_000_000n, unpacked.get(path)?.mtimeNs, path);
    }
    assert.deepEqual(treeSummary(extracted, { exclude: ["dev/null"] }), {
      a: "dir 0755",
      "a/f2": 'file 0644 "2 changed"',
      "a/f3": 'file 0600 "3"',
      b: "dir 0755",
      "b/x": 'file 0644 "x"',
      "b/x-link": 'file 0644 "x"',
      "b/y": 'file 0644 "y"',
      c: "dir 0755",
      "c/now-a-dir": 'file 0644 "d"',
      dev: "dir 0755",
      o: "dir 0755",
      "o/top": 'file 0644 "top"',
      "o/upper": 'file 0644 "upper"',
      s: "symlink -> a/f2",
      w: "dir 0755",
      "w/gone": 'file 0644 "a file now"',
    });
    assert.equal(extracted.get("b/x-link")?.linkGroup, "b/x");
  });

  it("the export extracts (GNU tar) with the unpacked directory mtimes", async () => {
    const out = join(await tempDir(), "out.tar");
    assert.equal((await runRoci(["export", image.ref, "-o", out])).code, 0);
    assert.deepEqual(diffTrees(unpacked, await extract(out), { ignoreMtimeOf: ["."] }), []);
  });

  it("- streams the same tar to stdout", async () => {
    const out = join(await tempDir(), "out.tar");
    assert.equal((await runRoci(["export", image.ref, "-o", out])).code, 0);
    const streamed = await runRoci(["export", image.ref, "-o", "-"]);
    assert.equal(streamed.code, 0, streamed.stderr);
    assert.ok(streamed.stdout.equals(await readFile(out)), "stdout carries the exported tar");
    const byDefault = await runRoci(["export", image.ref]);
    assert.ok(byDefault.stdout.equals(streamed.stdout), "stdout is the default");
  });

  it("a failed export (corrupt layer) leaves no out.tar and no partial file", async () => {
    const { layouts } = await fixtures();
    const area = await tempDir();
    const result = await runRoci([
      "export",
      `${layouts["corrupt-blob"].path}:v1`,
      "-o",
      join(area, "out.tar"),
    ]);
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
    assert.deepEqual(await readdir(area), []);
  });

  /** Exports and unpacks `layers`, and compares the trees. */
  async function exportMatchesUnpack(layers: Buffer[]): Promise<void> {
    const layered = await buildImage(await newLayout(), { layers });
    const area = await tempDir();
    const expected = (await unpackAndScan(layered.ref, join(area, "unpacked"))).tree;
    const result = await runRoci(["export", layered.ref, "-o", join(area, "out.tar")]);
    assert.equal(result.code, 0, result.stderr);
    const extracted = await extract(join(area, "out.tar"));
    assert.deepEqual(treeSummary(extracted), treeSummary(expected));
    assert.deepEqual(diffTrees(expected, extracted, { mtime: "non-dir" }), []);
  }

  it("a directory replaced by a file and then by a directory again exports without the old children", async () => {
    await exportMatchesUnpack([
      await layerTar([dir("d"), file("d/child", "c")]),
      await layerTar([file("d", "f")]),
      await layerTar([dir("d"), file("d/again", "a")]),
    ]);
  });

  it("a hard link whose target an upper layer replaced keeps the old content", async () => {
    await exportMatchesUnpack([
      await layerTar([file("f", "old"), hardlink("h", "f")]),
      await layerTar([file("f", "new")]),
    ]);
  });

  it("a hard link whose target an upper layer whited out is exported as a file", async () => {
    await exportMatchesUnpack([
      await layerTar([file("f", "old"), hardlink("h", "f")]),
      await layerTar([whiteout("", "f")]),
    ]);
  });

  it("a hard link in an upper layer to a lower layer's file comes after its target", async () => {
    await exportMatchesUnpack([await layerTar([file("f", "lower")]), await layerTar([hardlink("h", "f")])]);
  });
});
