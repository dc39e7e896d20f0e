/**
 * Copying images between layouts, through the library (copyImage) and the CLI (`roci copy`), checked
 * by the peers: skopeo reads and copies what roci wrote, umoci unpacks it, `roci verify` finds it
 * clean. Sources are never written, whether a read-only mount or a chmod a-w tree read by nobody.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { main } from "../cli/program.ts";
import { digestOf } from "../digest/hash.ts";
import { isRociError } from "../errors.ts";
import { Annotation } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";
import { isIndexType, isManifestType, MediaType } from "../spec/media-types.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import { LayoutStore, type PushOutcome } from "../store/layout-store.ts";
import { parseEntryName } from "../store/naming.ts";
import { type FixtureImage, fixtures, type PlatformKey } from "../test-support/fixtures.ts";
import { readIndex } from "../test-support/layout-edit.ts";
import {
  diffSnapshots,
  expectTreeUnchanged,
  snapshotTree,
  withReadOnlyBindMount,
  withUnwritableCopy,
} from "../test-support/readonly.ts";
import { NOBODY_GID, NOBODY_UID, runRoci } from "../test-support/run.ts";
import { tempDir } from "../test-support/scratch.ts";
import { type CopyEvent, copyImage } from "./copy.ts";

const execFileAsync = promisify(execFile);
const fx = await fixtures();
const { single, multi, nested } = fx.layouts;
const isRoot = process.getuid?.() === 0;
const needsRoot = isRoot ? false : "needs root (mount --bind, chmod of a copy, setpriv to uid 65534)";

/** Runs the CLI in this process. */
async function roci(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const code = await main(args, { stdout, stderr } as unknown as Parameters<typeof main>[1]);
  stdout.end();
  stderr.end();
  return { code, stdout: (await buffer(stdout)).toString(), stderr: (await buffer(stderr)).toString() };
}

async function expectVerifies(layout: string): Promise<void> {
  const result = await roci("verify", layout);
  assert.equal(result.code, 0, `roci verify ${layout}:\n${result.stdout}${result.stderr}`);
}

async function skopeoDigest(reference: string): Promise<string> {
  const { stdout } = await execFileAsync("skopeo", ["inspect", "--raw", reference], {
    encoding: "buffer",
    maxBuffer: 1 << 20,
  });
  return digestOf(stdout);
}

const blobsOf = (image: FixtureImage): string[] => [
  image.manifest.digest,
  image.config.digest,
  ...image.layers.map((layer) => layer.digest),
];

async function blobNames(layout: string): Promise<string[]> {
  const reader = await LayoutReader.open(layout);
  return (await reader.listBlobs()).digests.sort();
}

const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();

async function copyInto(
  source: string,
  tag: string,
  options: Parameters<typeof copyImage>[3] = {},
  destination?: string,
) {
  const reader = await LayoutReader.open(source);
  const store = await LayoutStore.openOrInit(destination ?? join(await tempDir(), "out"));
  const result = await copyImage(reader, await reader.resolve({ tag }), store, options);
  return { store, result };
}

describe("copyImage: platforms", () => {
  it("copies an index with every platform by default, digests preserved", async () => {
    const { store, result } = await copyInto(multi.path, "multi");
    assert.equal(result.root.digest, multi.index.digest);
    assert.equal(result.root.mediaType, MediaType.ociIndex);
    const expected = sorted([
      multi.index.digest,
      ...blobsOf(multi.platforms["linux/amd64"]),
      ...blobsOf(multi.platforms["linux/arm64/v8"]),
    ]);
    assert.deepEqual(await blobNames(store.location), expected);
    assert.equal(result.blobs, expected.length);
    assert.deepEqual(result.outcomes, { linked: 0, copied: expected.length, exists: 0 });
    await store.tag(result.root, [parseEntryName("multi")]);
    await expectVerifies(store.location);
    assert.equal(await skopeoDigest(`oci:${store.location}:multi`), multi.index.digest);
  });

  for (const [key, asTyped] of [
    ["linux/arm64/v8", "linux/arm64"],
    ["linux/amd64", "linux/amd64"],
  ] as const) {
    it(`with one platform (${asTyped}), that manifest becomes the root`, async () => {
      const image = multi.platforms[key];
      const [os, architecture] = asTyped.split("/") as [string, string];
      const { store, result } = await copyInto(multi.path, "multi", { platforms: [{ os, architecture }] });
      assert.equal(result.root.digest, image.manifest.digest);
      assert.equal(result.root.mediaType, MediaType.ociManifest);
      assert.deepEqual(result.root.platform, image.platform);
      assert.deepEqual(await blobNames(store.location), sorted(blobsOf(image)));
      await store.tag(result.root, [parseEntryName("one")]);
      await expectVerifies(store.location);
      assert.equal(await skopeoDigest(`oci:${store.location}:one`), image.manifest.digest);
    });
  }

  it("with two platforms, writes a new index listing both", async () => {
    const platforms = [
      { os: "linux", architecture: "arm64", variant: "v8" },
      { os: "linux", architecture: "amd64" },
    ];
    const { store, result } = await copyInto(multi.path, "multi", { platforms });
    assert.notEqual(result.root.digest, multi.index.digest);
    assert.equal(result.root.mediaType, MediaType.ociIndex);
    const raw = await readFile(store.blobPath(result.root.digest));
    assert.equal(digestOf(raw), result.root.digest);
    assert.equal(raw.byteLength, result.root.size);
    const index = JSON.parse(raw.toString()) as { mediaType: string; manifests: Descriptor[] };
    assert.equal(index.mediaType, MediaType.ociIndex);
    assert.deepEqual(
      index.manifests.map((entry) => [entry.digest, entry.platform]),
      (["linux/arm64/v8", "linux/amd64"] as const).map((key) => [
        multi.platforms[key].manifest.digest,
        multi.platforms[key].platform,
      ]),
    );
    assert.ok(!existsSync(store.blobPath(multi.index.digest)), "the source index is not copied");
    await store.tag(result.root, [parseEntryName("both")]);
    await expectVerifies(store.location);
    assert.equal(await skopeoDigest(`oci:${store.location}:both`), result.root.digest);
  });

  it("narrows a nested index (outer → inner → manifests) to one platform, or copies all of it", async () => {
    const arm = nested.platforms["linux/arm64/v8"];
    const one = await copyInto(nested.path, "nested", {
      platforms: [{ os: "linux", architecture: "arm64", variant: "v8" }],
    });
    assert.equal(one.result.root.digest, arm.manifest.digest);
    assert.deepEqual(await blobNames(one.store.location), sorted(blobsOf(arm)));

    const all = await copyInto(nested.path, "nested");
    assert.equal(all.result.root.digest, nested.outer.digest);
    const expected = sorted([
      nested.outer.digest,
      nested.inner.digest,
      ...(Object.keys(nested.platforms) as PlatformKey[]).flatMap((key) => blobsOf(nested.platforms[key])),
    ]);
    assert.deepEqual(await blobNames(all.store.location), expected);
    await all.store.tag(all.result.root, [parseEntryName("nested")]);
    await expectVerifies(all.store.location);
  });

  it("refuses a platform the index does not have (PLATFORM_NOT_FOUND), writing no blob", async () => {
    const out = join(await tempDir(), "out");
    await assert.rejects(
      copyInto(multi.path, "multi", { platforms: [{ os: "linux", architecture: "s390x" }] }, out),
      (error: unknown) => isRociError(error) && error.code === "PLATFORM_NOT_FOUND",
    );
    assert.deepEqual(existsSync(out) ? await blobNames(out) : [], []);
  });
});

describe("copyImage: order, events, and what is skipped", () => {
  it("pushes children before parents, and reports a plan and one event per blob", async () => {
    const pushed: string[] = [];
    const memory = {
      async push(descriptor: Descriptor, content: Readable): Promise<PushOutcome> {
        const bytes = await buffer(content);
        assert.equal(digestOf(bytes), descriptor.digest);
        pushed.push(descriptor.digest);
        return "copied";
      },
    };
    const reader = await LayoutReader.open(nested.path);
    const events: CopyEvent[] = [];
    const result = await copyImage(reader, await reader.resolve({ tag: "nested" }), memory, {
      concurrency: 1,
      onEvent: (event) => events.push(event),
    });
    const position = new Map(pushed.map((digest, i) => [digest, i]));
    assert.equal(position.size, pushed.length, "each blob once");
    const before = (child: string, parent: string) =>
      assert.ok(position.get(child)! < position.get(parent)!, `${child} after ${parent}`);
    for (const key of Object.keys(nested.platforms) as PlatformKey[]) {
      const image = nested.platforms[key];
      for (const blob of [image.config, ...image.layers]) before(blob.digest, image.manifest.digest);
      before(image.manifest.digest, nested.inner.digest);
    }
    before(nested.inner.digest, nested.outer.digest);
    assert.equal(pushed.at(-1), nested.outer.digest);

    const [plan, ...blobs] = events;
    assert.deepEqual(plan, { type: "plan", blobs: result.blobs, bytes: result.bytes });
    assert.equal(blobs.length, result.blobs);
    const last = blobs.at(-1);
    assert.ok(last?.type === "blob");
    assert.equal(last.blobsDone, result.blobs);
    assert.equal(last.bytesDone, result.bytes);
  });

  it("streams through push when the source has no local files", async () => {
    const reader = await LayoutReader.open(single.path);
    const remote = {
      fetch: (descriptor: Descriptor) => reader.fetch(descriptor),
      exists: (descriptor: Descriptor) => reader.exists(descriptor),
    };
    const store = await LayoutStore.init(join(await tempDir(), "out"));
    const result = await copyImage(remote, single.refs.v1, store);
    assert.deepEqual(result.outcomes, { linked: 0, copied: 4, exists: 0 });
    await store.tag(result.root, [parseEntryName("v1")]);
    await expectVerifies(store.location);
  });

  it("skips blobs the destination has: a second copy is all exists, and no blob is rewritten", async () => {
    const { store, result } = await copyInto(multi.path, "multi");
    const inodes = new Map<string, number>();
    for (const digest of await blobNames(store.location)) {
      inodes.set(digest, (await stat(store.blobPath(digest))).ino);
    }
    const again = await copyInto(multi.path, "multi", {}, store.location);
    assert.deepEqual(again.result.outcomes, { linked: 0, copied: 0, exists: result.blobs });
    for (const [digest, ino] of inodes) assert.equal((await stat(store.blobPath(digest))).ino, ino);
    // A different image sharing the base layer: only the new blobs move.
    const third = await copyInto(single.path, "v1", {}, store.location);
    const shared = blobsOf(single.image).filter((digest) => inodes.has(digest)).length;
    assert.ok(shared > 0);
    assert.equal(third.result.outcomes.exists, shared);
    assert.equal(third.result.outcomes.copied, 4 - shared);
  });
});

describe("roci copy", () => {
  it("names the copy with the source tag by default, and with several tags as out:t1,t2", async () => {
    const dir = await tempDir();
    const out = join(dir, "out");
    const first = await roci("copy", `${single.path}:v1`, out);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /as v1: 4 blobs/);
    const second = await roci("--format", "json", "copy", `${multi.path}:multi`, `${out}:t1,t2`);
    assert.equal(second.code, 0, second.stderr);
    const report = JSON.parse(second.stdout) as { digest: string; tags: string[]; outcomes: object };
    assert.equal(report.digest, multi.index.digest);
    assert.deepEqual(report.tags, ["t1", "t2"]);
    const reader = await LayoutReader.open(out);
    assert.deepEqual((await reader.tags()).sort(), ["t1", "t2", "v1"]);
    assert.equal((await reader.resolve({ tag: "v1" })).digest, single.refs.v1.digest);
    assert.equal((await reader.resolve({ tag: "t2" })).digest, multi.index.digest);
    await expectVerifies(out);
    for (const tag of ["t1", "t2"]) {
      assert.equal(await skopeoDigest(`oci:${out}:${tag}`), multi.index.digest);
    }
  });

  it("copies by digest as an untagged entry, once", async () => {
    const out = join(await tempDir(), "out");
    for (let i = 0; i < 2; i++) {
      const result = await roci("copy", `${single.path}@${single.refs.v1.digest}`, out);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /\(untagged\)/);
    }
    const { manifests } = await readIndex(out);
    assert.deepEqual(manifests, [single.refs.v1]);
  });

  it("--platform narrows to one manifest or a new index; the peers read the result", async () => {
    const dir = await tempDir();
    const out = join(dir, "out");
    const one = await roci("copy", "--platform", "linux/arm64", `${multi.path}:multi`, `${out}:arm`);
    assert.equal(one.code, 0, one.stderr);
    const two = await roci(
      "--format",
      "json",
      "copy",
      "--platform",
      "linux/amd64",
      "--platform",
      "linux/arm64/v8",
      `${multi.path}:multi`,
      `${out}:both`,
    );
    assert.equal(two.code, 0, two.stderr);
    const both = (JSON.parse(two.stdout) as { digest: string }).digest;
    const reader = await LayoutReader.open(out);
    assert.equal(
      (await reader.resolve({ tag: "arm" })).digest,
      multi.platforms["linux/arm64/v8"].manifest.digest,
    );
    assert.equal((await reader.resolve({ tag: "both" })).digest, both);
    await expectVerifies(out);
    assert.equal(await skopeoDigest(`oci:${out}:arm`), multi.platforms["linux/arm64/v8"].manifest.digest);
    assert.equal(await skopeoDigest(`oci:${out}:both`), both);

    const other = join(dir, "other");
    await execFileAsync("skopeo", ["copy", "--all", `oci:${out}:both`, `oci:${other}:both`]);
    await execFileAsync("skopeo", ["copy", `oci:${out}:arm`, `oci:${other}:arm`]);
    assert.equal(await skopeoDigest(`oci:${other}:both`), both);
    await expectVerifies(other);
  });

  it("skopeo copies and umoci unpacks a single-image copy", async () => {
    const dir = await tempDir();
    const out = join(dir, "out");
    const result = await roci("copy", `${single.path}:v1`, `${out}:v1`);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await skopeoDigest(`oci:${out}:v1`), single.refs.v1.digest);

    const other = join(dir, "other");
    await execFileAsync("skopeo", ["copy", `oci:${out}:v1`, `oci:${other}:v1`]);
    assert.equal(await skopeoDigest(`oci:${other}:v1`), single.refs.v1.digest);

    const bundle = join(dir, "bundle");
    await execFileAsync("umoci", ["unpack", "--image", `${out}:v1`, bundle]);
    const rootfs = join(bundle, "rootfs");
    for (const [path, file] of Object.entries(single.files)) {
      const full = join(rootfs, path);
      if (file.type === "file") assert.equal(await readFile(full, "utf8"), file.content, path);
      else if (file.type === "symlink") assert.equal(await readlink(full), file.target, path);
      else assert.ok((await stat(full)).isDirectory(), path);
    }
    const config = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as {
      process: { args: string[]; cwd: string };
    };
    assert.deepEqual(config.process.args, [...single.imageConfig.Entrypoint, ...single.imageConfig.Cmd]);
    assert.equal(config.process.cwd, single.imageConfig.WorkingDir);
  });

  it("--no-clobber succeeds when the tag is free or already names the same digest", async () => {
    const out = join(await tempDir(), "out");
    assert.equal((await roci("copy", `${single.path}:v1`, `${out}:stable`)).code, 0);
    const same = await roci("copy", "--no-clobber", `${single.path}:v1`, `${out}:stable`);
    assert.equal(same.code, 0, same.stderr);
    const fresh = await roci("copy", "--no-clobber", `${multi.path}:multi`, `${out}:other`);
    assert.equal(fresh.code, 0, fresh.stderr);
    const reader = await LayoutReader.open(out);
    assert.equal((await reader.resolve({ tag: "stable" })).digest, single.refs.v1.digest);
    assert.equal((await reader.resolve({ tag: "other" })).digest, multi.index.digest);
    // Without --no-clobber the tag moves.
    assert.equal((await roci("copy", `${multi.path}:multi`, `${out}:stable`)).code, 0);
    assert.equal((await reader.resolve({ tag: "stable" })).digest, multi.index.digest);
  });

  it("--no-clobber: exit 6 (CONFLICT) when the tag names another digest, before copying anything", {}, async () => {
    const out = join(await tempDir(), "out");
    assert.equal((await roci("copy", `${single.path}:v1`, `${out}:stable`)).code, 0);
    const before = await snapshotTree(out);
    const clash = await roci("copy", "--no-clobber", `${multi.path}:multi`, `${out}:stable`);
    assert.equal(clash.code, 6, clash.stdout + clash.stderr);
    assert.match(clash.stderr, /\[CONFLICT\]/);
    assert.match(clash.stderr, /stable/);
    assert.deepEqual(diffSnapshots(before, await snapshotTree(out)), [], "nothing was copied");
    const reader = await LayoutReader.open(out);
    assert.equal((await reader.resolve({ tag: "stable" })).digest, single.refs.v1.digest);
  });

  it("never copies a source blob that fails verification: exit 5, no blob, no index entry", async () => {
    const corrupt = fx.layouts["corrupt-blob"];
    const dir = await tempDir();
    const out = join(dir, "out");
    const result = await roci("copy", `${corrupt.path}:v1`, `${out}:v1`);
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /DIGEST_MISMATCH/);
    const store = await LayoutStore.open(out);
    assert.ok(!existsSync(store.blobPath(corrupt.corrupt.digest)), "the corrupt blob landed");
    assert.ok(!existsSync(store.blobPath(corrupt.refs.v1.digest)), "its manifest landed");
    assert.deepEqual((await readIndex(out)).manifests, []);
    // The library says the same, streaming (no local file to link) or from the file.
    const reader = await LayoutReader.open(corrupt.path);
    const remote = {
      fetch: (descriptor: Descriptor) => reader.fetch(descriptor),
      exists: (descriptor: Descriptor) => reader.exists(descriptor),
    };
    for (const source of [reader, remote]) {
      await assert.rejects(
        copyImage(source, corrupt.refs.v1, store, { concurrency: 1 }),
        (error: unknown) => isRociError(error) && error.code === "DIGEST_MISMATCH",
      );
      assert.ok(!existsSync(store.blobPath(corrupt.corrupt.digest)));
    }
  });

  it("fails with exit 3 (BLOB_MISSING) on a missing source blob, tagging nothing", {}, async () => {
    const missing = fx.layouts["missing-blob"];
    const out = join(await tempDir(), "out");
    const result = await roci("copy", `${missing.path}:v1`, `${out}:v1`);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /BLOB_MISSING/);
    assert.doesNotMatch(result.stderr, /INTERNAL|\n\s+at /);
    assert.deepEqual((await readIndex(out)).manifests, []);
  });
});

describe("roci copy from a read-only source", () => {
  it("(a) from fixtures on a read-only bind mount, as root", { skip: needsRoot }, async () => {
    const out = join(await tempDir(), "out");
    await expectTreeUnchanged(fx.root, () =>
      withReadOnlyBindMount(fx.root, async (mounted) => {
        for (const [layout, tag] of [
          ["multi", "multi"],
          ["nested", "nested"],
          ["single", "v1"],
        ] as const) {
          const source = join(mounted, layout);
          const before = await snapshotTree(source);
          const result = await roci("copy", `${source}:${tag}`, `${out}:${tag}`);
          assert.equal(result.code, 0, result.stderr);
          assert.match(result.stdout, /\(0 linked/, "a link never crosses a mount");
          assert.deepEqual(diffSnapshots(before, await snapshotTree(source)), []);
        }
      }),
    );
    await expectVerifies(out);
    assert.equal(await skopeoDigest(`oci:${out}:nested`), nested.outer.digest);
  });

  it("(b) from a chmod a-w copy read as uid 65534, into a directory only nobody can write", {
    skip: needsRoot,
  }, async () => {
    const parent = await tempDir();
    const home = join(parent, "nobody");
    await mkdir(home, { mode: 0o700 });
    await chown(home, NOBODY_UID, NOBODY_GID);
    await withUnwritableCopy(multi.path, async (source) => {
      const before = await snapshotTree(source);
      const out = join(home, "out");
      const result = await runRoci(["copy", `${source}:multi`, `${out}:multi`], { asNobody: true });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout.toString(), /\(0 linked/);
      const arm = await runRoci(["copy", "--platform", "linux/arm64/v8", `${source}:multi`, `${out}:arm`], {
        asNobody: true,
      });
      assert.equal(arm.code, 0, arm.stderr);
      assert.deepEqual(diffSnapshots(before, await snapshotTree(source)), []);
      const verify = await runRoci(["verify", out], { asNobody: true });
      assert.equal(verify.code, 0, verify.stdout.toString() + verify.stderr);
      assert.equal((await stat(join(out, "index.json"))).uid, NOBODY_UID);
      assert.equal(await skopeoDigest(`oci:${out}:multi`), multi.index.digest);
    });
  });

  it("(c) from a chmod a-w copy on the same filesystem, as root: blobs are hard-linked, contents untouched", {
    skip: needsRoot,
  }, async () => {
    const out = join(await tempDir(), "out");
    await withUnwritableCopy(single.path, async (source) => {
      const before = await snapshotTree(source);
      const result = await roci("--format", "json", "copy", `${source}:v1`, `${out}:v1`);
      assert.equal(result.code, 0, result.stderr);
      const { outcomes } = JSON.parse(result.stdout) as { outcomes: Record<PushOutcome, number> };
      // Layers and config are linked; documents fetched for the walk are written from memory.
      assert.deepEqual(outcomes, { linked: 3, copied: 1, exists: 0 });
      // A link adds a name for the inode (its link count and ctime change), nothing else.
      const stable = (lines: string[]) =>
        lines.map((line) => {
          const [path, type, size, mtime, , fileMode, owner, ino] = line.split("\t");
          return [path, type, size, mtime, fileMode, owner, ino].join("\t");
        });
      assert.deepEqual(diffSnapshots(stable(before), stable(await snapshotTree(source))), []);
      await expectVerifies(out);
    });
  });

  it("(c') a second copy from the same chmod a-w tree leaves the source's times alone", {
    skip: needsRoot,
  }, async () => {
    const out = join(await tempDir(), "out");
    await withUnwritableCopy(single.path, async (source) => {
      assert.equal((await roci("copy", `${source}:v1`, `${out}:v1`)).code, 0);
      const before = await snapshotTree(source);
      const again = await roci("copy", `${source}:v1`, `${out}:v1`);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(diffSnapshots(before, await snapshotTree(source)), []);
    });
  });

  it("(c'') a corrupt blob in a chmod a-w source is refused even when it would be hard-linked", {
    skip: needsRoot,
  }, async () => {
    const corrupt = fx.layouts["corrupt-blob"];
    const out = join(await tempDir(), "out");
    await withUnwritableCopy(corrupt.path, async (source) => {
      const result = await roci("copy", `${source}:v1`, `${out}:v1`);
      assert.equal(result.code, 5, result.stdout + result.stderr);
      assert.ok(!existsSync(join(out, "blobs", "sha256", corrupt.corrupt.digest.slice(7))));
    });
  });

  it("(c) with --trust-links, a read-only blob is linked on its size alone, and verify then reports it", {
    skip: needsRoot,
  }, async () => {
    const corrupt = fx.layouts["corrupt-blob"];
    const out = join(await tempDir(), "out");
    await withUnwritableCopy(corrupt.path, async (source) => {
      const result = await roci("copy", "--trust-links", `${source}:v1`, `${out}:v1`);
      assert.equal(result.code, 0, result.stderr);
      const verify = await roci("verify", out);
      assert.equal(verify.code, 5, verify.stdout);
      assert.match(verify.stdout, new RegExp(`corrupt\\s+.*${corrupt.corrupt.digest}`));
    });
  });
});

describe("copyImage: destination index entry details", () => {
  it("a platform-narrowed root carries its platform into index.json", async () => {
    const { store, result } = await copyInto(multi.path, "multi", {
      platforms: [{ os: "linux", architecture: "arm64" }],
    });
    await store.tag(result.root, [parseEntryName("example.com/app:arm")]);
    const [entry] = (await readIndex(store.location)).manifests;
    assert.ok(entry);
    assert.deepEqual(entry.platform, multi.platforms["linux/arm64/v8"].platform);
    assert.deepEqual(entry.annotations, {
      [Annotation.containerdName]: "example.com/app:arm",
      [Annotation.refName]: "arm",
    });
    assert.ok(isManifestType(entry.mediaType) && !isIndexType(entry.mediaType));
  });
});
