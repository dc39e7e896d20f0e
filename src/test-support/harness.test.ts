/**
 * Self-test of the test harness: the fixtures are what fixtures.json says (checked with skopeo and by
 * hashing every blob), snapshots catch changes but not reads, the bind mount really is read-only and
 * the unwritable copy really refuses uid 65534.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, lstat, mkdir, open, readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { copyFixture, fixtureScript, fixtures, type LayoutName, repoRoot } from "./fixtures.ts";
import {
  diffSnapshots,
  expectTreeUnchanged,
  snapshotTree,
  withReadOnlyBindMount,
  withUnwritableCopy,
} from "./readonly.ts";
import { readableByNobody, runProgram, runRoci } from "./run.ts";

const execFileAsync = promisify(execFile);
const sha256 = (bytes: Buffer): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const isRoot = process.getuid?.() === 0;

/** Every file under blobs/sha256, as [name digest, digest of content]. */
async function blobDigests(layout: string): Promise<[string, string][]> {
  const dir = join(layout, "blobs", "sha256");
  const out: [string, string][] = [];
  for (const name of (await readdir(dir)).sort()) {
    out.push([`sha256:${name}`, sha256(await readFile(join(dir, name)))]);
  }
  return out;
}

describe("fixtures", () => {
  it("builds once into a directory named by the script's hash and lists every layout", async () => {
    const fx = await fixtures();
    assert.equal(await fixtures(), fx, "cached per process");
    const hash = createHash("sha256")
      .update(await readFile(fixtureScript))
      .digest("hex")
      .slice(0, 12);
    assert.equal(fx.root, join(tmpdir(), `roci-fixtures-${hash}`));
    const expected: LayoutName[] = [
      "single",
      "multi",
      "nested",
      "tagged",
      "names",
      "missing-blob",
      "corrupt-blob",
      "symlinked",
      "weird",
      "index-bad-json",
      "index-not-index",
      "index-too-large",
      "no-oci-layout",
      "bad-version",
      "is-a-file",
    ];
    assert.deepEqual(Object.keys(fx.layouts).sort(), [...expected].sort());
    for (const name of expected) {
      const st = await stat(fx.layouts[name].path);
      assert.equal(st.isDirectory(), name !== "is-a-file", name);
    }
    assert.equal(basename(fx.layouts.weird.path), "layout");
    assert.match(fx.layouts.weird.path, /@.*:/);
    assert.equal(fx.sourceDateEpoch, 1700000000);
  });

  it("agrees with skopeo on the recorded digests", async () => {
    const fx = await fixtures();
    const raw = async (ref: string): Promise<string> => {
      const { stdout } = await execFileAsync("skopeo", ["inspect", "--raw", ref], {
        encoding: "buffer",
        maxBuffer: 1 << 20,
      });
      return sha256(stdout);
    };
    assert.equal(await raw(`oci:${fx.layouts.single.path}:v1`), fx.layouts.single.refs.v1.digest);
    assert.equal(await raw(`oci:${fx.layouts.multi.path}:multi`), fx.layouts.multi.index.digest);
    assert.equal(await raw(`oci:${fx.layouts.tagged.path}:latest`), fx.layouts.tagged.refs.app.digest);
    assert.equal(await raw(`oci:${fx.layouts.symlinked.path}:v1`), fx.layouts.single.refs.v1.digest);
  });

  it("records what the layouts contain", async () => {
    const { layouts } = await fixtures();
    const single = layouts.single;
    assert.equal(single.image.layers.length, 2);
    assert.deepEqual(single.imageConfig.Entrypoint, ["/app/run.sh"]);
    assert.equal(single.files["etc/greeting"]?.type, "symlink");
    assert.deepEqual(Object.keys(layouts.multi.platforms).sort(), ["linux/amd64", "linux/arm64/v8"]);
    assert.equal(layouts.multi.platforms["linux/arm64/v8"].platform.variant, "v8");
    assert.equal(layouts.nested.inner.digest, layouts.multi.index.digest);
    assert.equal(layouts.tagged.refs.latest.digest, layouts.tagged.refs.app.digest);
    assert.equal(layouts.tagged.images.app.layers[0]?.digest, layouts.tagged.images.base.layers[0]?.digest);
    assert.equal(layouts.tagged.untagged.length, 1);
    assert.equal(
      layouts.tagged.images.zstd.layers[0]?.mediaType,
      "application/vnd.oci.image.layer.v1.tar+zstd",
    );
    assert.equal(
      layouts.tagged.refs.docker.mediaType,
      "application/vnd.docker.distribution.manifest.v2+json",
    );
    assert.equal(new Set(layouts.names.ambiguous.digests).size, 2);
    const index = JSON.parse(await readFile(join(layouts.single.path, "index.json"), "utf8")) as unknown;
    assert.deepEqual(index, { schemaVersion: 2, manifests: single.entries });
    assert.ok((await stat(join(layouts["index-too-large"].path, "index.json"))).size > 4 * 1024 * 1024);
  });

  it("has intact blobs except the damaged ones", async () => {
    const { layouts } = await fixtures();
    for (const name of ["single", "multi", "nested", "tagged", "names", "symlinked", "weird"] as const) {
      for (const [named, actual] of await blobDigests(layouts[name].path)) assert.equal(actual, named, name);
    }
    const corrupt = layouts["corrupt-blob"];
    const bad = (await blobDigests(corrupt.path)).filter(([named, actual]) => named !== actual);
    assert.deepEqual(
      bad.map(([named]) => named),
      [corrupt.corrupt.digest],
    );
    const corruptPath = join(corrupt.path, "blobs", "sha256", corrupt.corrupt.digest.slice(7));
    assert.equal((await stat(corruptPath)).size, corrupt.corrupt.size);
    const missing = layouts["missing-blob"];
    assert.equal(existsSync(join(missing.path, "blobs", "sha256", missing.missing.digest.slice(7))), false);
    const link = join(layouts.symlinked.path, "blobs", "sha256", layouts.symlinked.refs.v1.digest.slice(7));
    assert.ok((await lstat(link)).isSymbolicLink());
  });

  it("is readable by uid 65534", { skip: !isRoot && "needs root" }, async () => {
    const fx = await fixtures();
    assert.equal(await readableByNobody(fx.root), true);
  });

  it("copyFixture gives a private copy that keeps relative symlinks working", async () => {
    const fx = await fixtures();
    const copy = await copyFixture("symlinked");
    assert.notEqual(copy, fx.layouts.symlinked.path);
    for (const [named, actual] of await blobDigests(copy)) assert.equal(actual, named);
    const weird = await copyFixture("weird");
    assert.match(weird, /at@sign:colon\/layout$/);
    assert.deepEqual(await blobDigests(weird), await blobDigests(fx.layouts.weird.path));
  });
});

describe("snapshotTree", () => {
  it("ignores reads and catches touches, chmods and new files", async () => {
    const dir = await copyFixture("single");
    const before = await snapshotTree(dir);
    assert.ok(before.some((line) => line.startsWith("index.json\tfile\t")));
    for (const [named] of await blobDigests(dir))
      await readFile(join(dir, "blobs", "sha256", named.slice(7)));
    await readFile(join(dir, "index.json"));
    assert.deepEqual(await snapshotTree(dir), before, "reading changes nothing");

    const index = join(dir, "index.json");
    const st = await stat(index);
    await utimes(index, st.atime, new Date(st.mtimeMs + 1000));
    const touched = diffSnapshots(before, await snapshotTree(dir));
    assert.equal(touched.length, 2);
    assert.ok(touched.every((line) => line.slice(2).startsWith("index.json\t")));

    const afterTouch = await snapshotTree(dir);
    await chmod(index, st.mode & 0o7777); // same mode: only ctime moves
    assert.notDeepEqual(await snapshotTree(dir), afterTouch);

    await assert.rejects(
      expectTreeUnchanged(dir, () => writeFile(join(dir, "blobs", "new"), "x")),
      /\+ blobs\/new\tfile/,
    );
    await expectTreeUnchanged(dir, () => readFile(index));
  });
});

describe("withReadOnlyBindMount", { skip: !isRoot && "needs root" }, () => {
  it("refuses writes with EROFS, even as root, and cleans up", async () => {
    const { layouts } = await fixtures();
    const src = layouts.weird.path; // '@' and ':' in the path reach mount(8) intact
    const before = await snapshotTree(src);
    let mountpoint = "";
    await withReadOnlyBindMount(src, async (mounted) => {
      mountpoint = mounted;
      assert.deepEqual(await readFile(join(mounted, "index.json")), await readFile(join(src, "index.json")));
      await assert.rejects(writeFile(join(mounted, "new"), "x"), { code: "EROFS" });
      await assert.rejects(open(join(mounted, "index.json"), "r+"), { code: "EROFS" });
      await assert.rejects(mkdir(join(mounted, "blobs", "ingest")), { code: "EROFS" });
      await assert.rejects(chmod(join(mounted, "oci-layout"), 0o600), { code: "EROFS" });
    });
    assert.equal(existsSync(mountpoint), false);
    assert.equal((await readFile("/proc/self/mountinfo", "utf8")).includes(mountpoint), false);
    assert.deepEqual(await snapshotTree(src), before);
  });

  it("mounts a single file too", async () => {
    const { layouts } = await fixtures();
    await withReadOnlyBindMount(layouts["is-a-file"].path, async (mounted) => {
      assert.equal((await stat(mounted)).isFile(), true);
      await assert.rejects(writeFile(mounted, "x"), { code: "EROFS" });
    });
  });
});

describe("withUnwritableCopy", { skip: !isRoot && "needs root" }, () => {
  it("gives uid 65534 EACCES on every kind of write, but lets it read", async () => {
    const { layouts } = await fixtures();
    let copyPath = "";
    await withUnwritableCopy(layouts.single.path, async (copy) => {
      copyPath = copy;
      const before = await snapshotTree(copy);
      const attempt = `
        const fs = require("node:fs"), p = require("node:path"), dir = process.argv[1];
        const codes = {};
        const tryIt = (name, fn) => { try { fn(); codes[name] = "ok"; } catch (e) { codes[name] = e.code; } };
        tryIt("create", () => fs.writeFileSync(p.join(dir, "new"), "x"));
        tryIt("openWrite", () => fs.openSync(p.join(dir, "index.json"), "r+"));
        tryIt("mkdir", () => fs.mkdirSync(p.join(dir, "blobs", "ingest")));
        tryIt("lock", () => fs.openSync(p.join(dir, "index.json.lock"), "wx"));
        tryIt("unlink", () => fs.unlinkSync(p.join(dir, "oci-layout")));
        tryIt("rename", () => fs.renameSync(p.join(dir, "index.json"), p.join(dir, "index.old")));
        tryIt("read", () => fs.readFileSync(p.join(dir, "index.json")));
        tryIt("readBlob", () => { for (const n of fs.readdirSync(p.join(dir, "blobs", "sha256"))) fs.readFileSync(p.join(dir, "blobs", "sha256", n)); });
        console.log(JSON.stringify(codes));
      `;
      const result = await runProgram(process.execPath, ["-e", attempt, copy], { asNobody: true });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout.toString()), {
        create: "EACCES",
        openWrite: "EACCES",
        mkdir: "EACCES",
        lock: "EACCES",
        unlink: "EACCES",
        rename: "EACCES",
        read: "ok",
        readBlob: "ok",
      });
      const touch = await runProgram("touch", [join(copy, "index.json")], { asNobody: true });
      assert.notEqual(touch.code, 0);
      assert.match(touch.stderr, /Permission denied/);
      assert.deepEqual(await snapshotTree(copy), before);
    });
    assert.equal(existsSync(copyPath), false);
  });
});

describe("run", () => {
  it("runs a program as uid 65534 with a HOME, stdin and exit code", {
    skip: !isRoot && "needs root",
  }, async () => {
    const script =
      "process.stdout.write([process.getuid(), process.getgid(), process.env.HOME].join(' ') + '\\n');" +
      "process.stdin.pipe(process.stdout); process.stdin.on('end', () => { process.exitCode = 3; });";
    const r = await runProgram(process.execPath, ["-e", script], {
      asNobody: true,
      input: Buffer.from("hi"),
    });
    assert.equal(r.code, 3, r.stderr);
    const [ids, rest] = r.stdout.toString().split("\n");
    const [uid, gid, home] = (ids ?? "").split(" ");
    assert.equal(uid, "65534");
    assert.equal(gid, "65534");
    assert.equal((await stat(home ?? "/nonexistent")).uid, 65534);
    assert.equal(rest, "hi");
  });

  it("drops inherited ROCI_* variables and passes given ones", async () => {
    process.env.ROCI_HARNESS_PROBE = "inherited";
    try {
      const r = await runProgram(
        process.execPath,
        ["-e", "console.log(JSON.stringify([process.env.ROCI_HARNESS_PROBE, process.env.ROCI_X]))"],
        {
          env: { ROCI_X: "given" },
        },
      );
      assert.deepEqual(JSON.parse(r.stdout.toString()), [null, "given"]);
    } finally {
      delete process.env.ROCI_HARNESS_PROBE;
    }
  });

  const cli = join(repoRoot, "dist", "cli", "main.js");
  it("runs the CLI as uid 65534", {
    skip: (!isRoot || !existsSync(cli)) && "needs root and dist/cli/main.js",
  }, async () => {
    const r = await runRoci(["--help"], { asNobody: true });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.length > 0);
  });
});
