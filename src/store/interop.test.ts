/**
 * roci and the real peer tools on the same layouts (DESIGN.md "Tests and benchmarks": real peers, not
 * mocks): skopeo 1.9 and umoci 0.4.7 read what roci writes; roci reads what they wrote and adds tags
 * without losing theirs; skopeo writes into a layout roci wrote and roci still reads all of it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { copyFixture, type FixtureEntry, fixtures } from "../test-support/fixtures.ts";
import { type RunResult, runProgram, runRoci } from "../test-support/run.ts";
import { tempDir } from "../test-support/scratch.ts";
import { LayoutReader } from "./layout-reader.ts";

const refName = "org.opencontainers.image.ref.name";
const hasSkopeo = spawnSync("skopeo", ["--version"]).status === 0;
const hasUmoci = spawnSync("umoci", ["--version"]).status === 0;
const peers =
  hasSkopeo && hasUmoci ? {} : { skip: "skopeo and umoci are needed (the project's setup installs them)" };

function describeRun(what: string, result: RunResult): string {
  return `${what}: exit ${result.code}\nstdout: ${result.stdout.toString()}\nstderr: ${result.stderr}`;
}

async function ok(file: string, args: string[], options: { cwd?: string } = {}): Promise<RunResult> {
  const result = file === "roci" ? await runRoci(args, options) : await runProgram(file, args, options);
  assert.equal(result.code, 0, describeRun(`${file} ${args.join(" ")}`, result));
  return result;
}

/** `skopeo inspect oci:DIR:TAG`: the digest it reports, and the digest of the raw manifest it reads. */
async function skopeoDigests(dir: string, tag: string): Promise<{ reported: string; raw: string }> {
  const inspect = await ok("skopeo", ["inspect", `oci:${dir}:${tag}`]);
  const raw = await ok("skopeo", ["inspect", "--raw", `oci:${dir}:${tag}`]);
  return {
    reported: (JSON.parse(inspect.stdout.toString()) as { Digest: string }).Digest,
    raw: `sha256:${createHash("sha256").update(raw.stdout).digest("hex")}`,
  };
}

/** The tags skopeo can inspect in `dir`, with the digest it reads for each. */
async function skopeoReadable(dir: string, tags: readonly string[]): Promise<Map<string, string>> {
  const readable = new Map<string, string>();
  for (const tag of tags) {
    const result = await runProgram("skopeo", ["inspect", "--raw", `oci:${dir}:${tag}`]);
    if (result.code === 0)
      readable.set(tag, `sha256:${createHash("sha256").update(result.stdout).digest("hex")}`);
  }
  return readable;
}

async function umociTags(dir: string): Promise<string[]> {
  const result = await ok("umoci", ["ls", "--layout", dir]);
  return result.stdout.toString().trim().split("\n").filter(Boolean);
}

async function rociTags(dir: string): Promise<string[]> {
  const result = await ok("roci", ["--format", "json", "tags", dir]);
  return JSON.parse(result.stdout.toString()) as string[];
}

/** roci resolves every name to the expected digest, and verifies the whole layout clean. */
async function assertRociReads(dir: string, expected: Record<string, string>): Promise<void> {
  const reader = await LayoutReader.open(dir);
  for (const [tag, digest] of Object.entries(expected)) {
    assert.equal((await reader.resolve({ tag })).digest, digest, `roci resolves ${dir}:${tag}`);
  }
  const verify = await ok("roci", ["--format", "json", "verify", dir]);
  const report = JSON.parse(verify.stdout.toString()) as { ok: boolean; problems: unknown[] };
  assert.equal(report.ok, true);
  assert.deepEqual(report.problems, []);
}

function tagOf(entry: FixtureEntry): string | undefined {
  return entry.annotations?.[refName];
}

describe("interoperability with skopeo and umoci", { ...peers, timeout: 60_000 }, () => {
  it("skopeo and umoci read what `roci copy` wrote", async () => {
    const fx = (await fixtures()).layouts;
    const work = await tempDir();
    const dir = join(work, "roci-out");
    const images = {
      v1: { src: `${fx.single.path}:v1`, digest: fx.single.refs.v1.digest },
      app: { src: `${fx.tagged.path}:app`, digest: fx.tagged.refs.app.digest },
      multi: { src: `${fx.multi.path}:multi`, digest: fx.multi.refs.multi.digest },
    };
    // The first copy creates the layout.
    for (const [tag, { src }] of Object.entries(images)) await ok("roci", ["copy", src, `${dir}:${tag}`]);

    for (const [tag, { digest }] of Object.entries(images)) {
      const { reported, raw } = await skopeoDigests(dir, tag);
      assert.equal(reported, digest, `skopeo inspect oci:${dir}:${tag}`);
      assert.equal(raw, digest, `skopeo inspect --raw oci:${dir}:${tag} hashes to the digest`);
    }

    const other = join(work, "skopeo-out");
    await ok("skopeo", ["copy", `oci:${dir}:v1`, `oci:${other}:v1`]);
    await ok("skopeo", ["copy", "--all", `oci:${dir}:multi`, `oci:${other}:multi`]);
    // And back: roci reads skopeo's copy of roci's output, byte for byte the same images.
    await assertRociReads(other, { v1: images.v1.digest, multi: images.multi.digest });

    assert.deepEqual((await umociTags(dir)).sort(), Object.keys(images).sort());
    const bundle = join(work, "bundle");
    await ok("umoci", [
      "unpack",
      ...(process.getuid?.() === 0 ? [] : ["--rootless"]),
      "--image",
      `${dir}:v1`,
      bundle,
    ]);
    for (const [path, expected] of Object.entries(fx.single.files)) {
      const full = join(bundle, "rootfs", path);
      const info = await lstat(full);
      if (expected.type === "file") {
        assert.ok(info.isFile(), `${path} is a file`);
        assert.equal(await readFile(full, "utf8"), expected.content, `${path} content`);
      } else if (expected.type === "dir") {
        assert.ok(info.isDirectory(), `${path} is a directory`);
      } else {
        assert.equal(await readlink(full), expected.target, `${path} links to ${expected.target}`);
      }
    }
  });

  for (const [name, maker] of [
    ["single", "umoci"],
    ["tagged", "skopeo"],
  ] as const) {
    it(`roci reads the layout ${maker} wrote (${name}) and adds tags without losing ${maker}'s`, async () => {
      const fixture = (await fixtures()).layouts[name];
      const dir = await copyFixture(name);
      const originalTags = fixture.entries.map(tagOf).filter((tag): tag is string => tag !== undefined);
      const first = originalTags[0]!;
      const firstDigest = fixture.entries.find((entry) => tagOf(entry) === first)!.digest;
      // What skopeo can read before roci touches the layout (skopeo 1.9 cannot inspect a Docker schema 2
      // entry of an OCI layout: that one is unreadable to it before and after alike).
      const before = await skopeoReadable(dir, originalTags);
      assert.ok(before.size > 0);

      const added = ["roci-new", "2.0-roci", "example.com/team/app:3.0"];
      await ok("roci", ["tag", `${dir}:${first}`, ...added]);

      const after = await skopeoReadable(dir, originalTags);
      assert.deepEqual([...after].sort(), [...before].sort(), "skopeo still reads every tag it read before");
      for (const tag of ["roci-new", "2.0-roci", "3.0"]) {
        const { raw } = await skopeoDigests(dir, tag);
        assert.equal(raw, firstDigest, `skopeo reads roci's new tag ${tag}`);
      }

      const umoci = await umociTags(dir);
      for (const tag of [...originalTags, "roci-new", "2.0-roci", "3.0"]) {
        assert.ok(umoci.includes(tag), `umoci ls lists ${tag}: ${umoci.join(", ")}`);
      }

      const roci = await rociTags(dir);
      for (const tag of [...originalTags, ...added]) assert.ok(roci.includes(tag), `roci tags lists ${tag}`);

      // Every entry the peer wrote is still there, verbatim (the untagged one too).
      const { manifests } = await (await LayoutReader.open(dir)).index();
      for (const entry of fixture.entries) {
        assert.ok(
          manifests.some((kept) => JSON.stringify(kept) === JSON.stringify(entry)),
          `entry ${entry.digest} (${tagOf(entry) ?? "untagged"}) kept verbatim`,
        );
      }
      await assertRociReads(dir, {
        ...Object.fromEntries(fixture.entries.flatMap((e) => (tagOf(e) ? [[tagOf(e), e.digest]] : []))),
        "roci-new": firstDigest,
        "example.com/team/app:3.0": firstDigest,
      });
    });
  }

  it("after roci writes, skopeo (and umoci) write into the same layout and roci still reads every tag", async () => {
    const fx = (await fixtures()).layouts;
    const dir = join(await tempDir(), "shared");
    await ok("roci", ["init", dir]);
    await ok("roci", ["copy", `${fx.single.path}:v1`, `${dir}:v1`]);
    await ok("roci", ["tag", `${dir}:v1`, "extra", "example.com/team/app:1.0"]);
    await ok("roci", ["copy", `${fx.multi.path}:multi`, `${dir}:multi`]);

    await ok("skopeo", ["copy", `oci:${fx.tagged.path}:base`, `oci:${dir}:from-skopeo`]);
    await ok("skopeo", ["copy", "--all", `oci:${fx.multi.path}:multi`, `oci:${dir}:multi-skopeo`]);
    await ok("umoci", ["tag", "--image", `${dir}:v1`, "from-umoci"]);

    const expected = {
      v1: fx.single.refs.v1.digest,
      extra: fx.single.refs.v1.digest,
      "example.com/team/app:1.0": fx.single.refs.v1.digest,
      multi: fx.multi.refs.multi.digest,
      "from-skopeo": fx.tagged.refs.base.digest,
      "multi-skopeo": fx.multi.refs.multi.digest,
      "from-umoci": fx.single.refs.v1.digest,
    };
    const tags = await rociTags(dir);
    for (const tag of Object.keys(expected)) assert.ok(tags.includes(tag), `roci tags lists ${tag}: ${tags}`);
    await assertRociReads(dir, expected);

    // roci can keep writing after skopeo: a tag onto skopeo's image, and skopeo reads it.
    await ok("roci", ["tag", `${dir}:from-skopeo`, "after-skopeo"]);
    assert.equal((await skopeoDigests(dir, "after-skopeo")).raw, fx.tagged.refs.base.digest);
    await assertRociReads(dir, { ...expected, "after-skopeo": fx.tagged.refs.base.digest });
  });

  it("a layout made by `roci init` + `roci copy` has oci-layout 1.0.0 and passes skopeo inspect", async () => {
    const { single } = (await fixtures()).layouts;
    const dir = join(await tempDir(), "fresh");
    await ok("roci", ["init", dir]);
    const header: unknown = JSON.parse(await readFile(join(dir, "oci-layout"), "utf8"));
    assert.deepEqual(header, { imageLayoutVersion: "1.0.0" });
    await ok("roci", ["copy", `${single.path}:v1`, `${dir}:v1`]);
    assert.deepEqual(JSON.parse(await readFile(join(dir, "oci-layout"), "utf8")), {
      imageLayoutVersion: "1.0.0",
    });
    const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8")) as { schemaVersion: number };
    assert.equal(index.schemaVersion, 2);
    const { reported, raw } = await skopeoDigests(dir, "v1");
    assert.equal(reported, single.refs.v1.digest);
    assert.equal(raw, single.refs.v1.digest);
    assert.deepEqual(await umociTags(dir), ["v1"]);
  });
});
