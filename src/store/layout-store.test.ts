/**
 * LayoutStore, the writer (DESIGN.md "Write discipline"): blobs land verified, read-only and by
 * rename, never half-written or rewritten; index.json changes under the lock, by rename, keeping
 * what roci does not understand; a destination roci cannot write is refused before any write.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { main } from "../cli/program.ts";
import { copyImage } from "../copy/copy.ts";
import { digestOf } from "../digest/hash.ts";
import { isRociError, type RociErrorCode } from "../errors.ts";
import { Annotation } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import { copyFixture, fixtures } from "../test-support/fixtures.ts";
import { readIndex } from "../test-support/layout-edit.ts";
import {
  diffSnapshots,
  expectTreeUnchanged,
  snapshotTree,
  withReadOnlyBindMount,
  withUnwritableCopy,
} from "../test-support/readonly.ts";
import { runRoci } from "../test-support/run.ts";
import { removeAtExit, tempDir } from "../test-support/scratch.ts";
import { LayoutReader } from "./layout-reader.ts";
import { LayoutStore, tempDirName } from "./layout-store.ts";
import { parseEntryName } from "./naming.ts";

const execFileAsync = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const needsRoot = isRoot ? false : "needs root (mount --bind, chmod of a copy, setpriv to uid 65534)";

async function newStore(): Promise<LayoutStore> {
  return LayoutStore.init(join(await tempDir(), "layout"));
}

const blob = (content: string | Uint8Array, mediaType: string = MediaType.ociLayer): Descriptor => {
  const bytes = typeof content === "string" ? Buffer.from(content) : content;
  return { mediaType, digest: digestOf(bytes), size: bytes.byteLength };
};

const streamOf = (content: string | Uint8Array): Readable =>
  Readable.from([typeof content === "string" ? Buffer.from(content) : content]);

/** Every path under `dir`, relative, sorted (directories included). */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      out.push(relative(dir, full));
      if (entry.isDirectory()) await visit(full);
    }
  };
  await visit(dir);
  return out.sort();
}

const annotationsOf = (entry: { [field: string]: unknown }): Record<string, string> =>
  (entry.annotations ?? {}) as Record<string, string>;

const isCode =
  (code: RociErrorCode, mentions?: string) =>
  (error: unknown): boolean => {
    assert.ok(isRociError(error), `expected a RociError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (mentions !== undefined) assert.ok(error.message.includes(mentions), error.message);
    return true;
  };

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o7777;

/** Runs the CLI in this process. */
async function roci(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const code = await main(args, { stdout, stderr } as unknown as Parameters<typeof main>[1]);
  stdout.end();
  stderr.end();
  return { code, stdout: (await buffer(stdout)).toString(), stderr: (await buffer(stderr)).toString() };
}

describe("LayoutStore.push", () => {
  it("lands a verified stream under blobs/sha256/<hex>, read-only (0444)", async () => {
    const store = await newStore();
    const content = "hello, layer";
    const descriptor = blob(content);
    assert.equal(await store.push(descriptor, streamOf(content)), "copied");
    const path = join(store.location, "blobs", "sha256", descriptor.digest.slice("sha256:".length));
    assert.equal(store.blobPath(descriptor.digest), path);
    assert.equal(await readFile(path, "utf8"), content);
    assert.equal(await mode(path), 0o444);
    assert.ok(!existsSync(join(store.location, tempDirName)), "the temp area is removed once empty");
  });

  it("streams a blob bigger than one chunk, in many pieces", async () => {
    const store = await newStore();
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const pieces = Array.from({ length: 50 }, (_, i) => bytes.subarray(i * 65_536, (i + 1) * 65_536));
    pieces.push(bytes.subarray(50 * 65_536));
    const descriptor = blob(bytes);
    assert.equal(await store.push(descriptor, Readable.from(pieces)), "copied");
    assert.ok((await readFile(store.blobPath(descriptor.digest))).equals(bytes));
  });

  const failures: Array<[string, () => { descriptor: Descriptor; content: Readable }, RociErrorCode]> = [
    [
      "the wrong digest (same size)",
      () => ({ descriptor: blob("aaaa"), content: streamOf("bbbb") }),
      "DIGEST_MISMATCH",
    ],
    [
      "fewer bytes than the size",
      () => ({ descriptor: blob("abcdef"), content: streamOf("abc") }),
      "SIZE_MISMATCH",
    ],
    [
      "more bytes than the size",
      () => ({ descriptor: blob("abc"), content: streamOf("abcdef") }),
      "SIZE_MISMATCH",
    ],
  ];
  for (const [what, make, code] of failures) {
    it(`refuses ${what} with ${code}, leaving no file under blobs/ and no temp file`, async () => {
      const store = await newStore();
      const before = await listTree(store.location);
      const { descriptor, content } = make();
      await assert.rejects(store.push(descriptor, content), isCode(code));
      assert.ok(!existsSync(store.blobPath(descriptor.digest)));
      assert.deepEqual(await listTree(store.location), before, "nothing left behind, not even .roci-tmp");
    });
  }

  it("leaves nothing when the source stream fails midway", async () => {
    const store = await newStore();
    const before = await listTree(store.location);
    const whole = Buffer.alloc(256 * 1024, 1);
    const descriptor = blob(whole);
    const interrupted = Readable.from(
      (async function* () {
        yield whole.subarray(0, 100_000);
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error("connection reset by peer");
      })(),
    );
    await assert.rejects(store.push(descriptor, interrupted), (error: unknown) => {
      assert.ok(isRociError(error), String(error));
      assert.match(error.message, /connection reset by peer/);
      return true;
    });
    assert.ok(!existsSync(store.blobPath(descriptor.digest)));
    assert.deepEqual(await listTree(store.location), before);
  });

  it("does not rewrite a valid blob that is already there (same inode, outcome exists)", async () => {
    const store = await newStore();
    const content = "already here";
    const descriptor = blob(content);
    await store.push(descriptor, streamOf(content));
    const path = store.blobPath(descriptor.digest);
    const first = await stat(path);
    const content2 = streamOf(content);
    assert.equal(await store.push(descriptor, content2), "exists");
    const second = await stat(path);
    assert.equal(second.ino, first.ino);
    assert.equal(await mode(path), 0o444);
    assert.ok(content2.destroyed, "the unused source stream is closed");
    assert.ok(!existsSync(join(store.location, tempDirName)));
  });

  it("refreshes the time of a blob it relies on, so a concurrent gc's grace period protects it", async () => {
    const store = await newStore();
    const content = "old but needed";
    const descriptor = blob(content);
    await store.push(descriptor, streamOf(content));
    const path = store.blobPath(descriptor.digest);
    const old = new Date(Date.now() - 3 * 24 * 3600_000);
    await utimes(path, old, old);
    assert.equal(await store.push(descriptor, streamOf(content)), "exists");
    assert.ok((await stat(path)).mtimeMs > Date.now() - 60_000);
  });

  for (const [what, corrupt] of [
    ["a corrupt blob of the same size", "XXXXXXXXXXXXXXX"],
    ["a truncated blob", "XXX"],
  ] as const) {
    it(`replaces ${what} that is already there`, async () => {
      const store = await newStore();
      const content = "the real content";
      const descriptor = blob(content);
      const path = store.blobPath(descriptor.digest);
      await mkdir(join(store.location, "blobs", "sha256"), { recursive: true });
      await writeFile(path, corrupt, { mode: 0o444 });
      const before = (await stat(path)).ino;
      assert.equal(await store.push(descriptor, streamOf(content)), "copied");
      assert.equal(await readFile(path, "utf8"), content);
      assert.notEqual((await stat(path)).ino, before, "replaced by rename, not rewritten");
      assert.equal(await mode(path), 0o444);
    });
  }

  it("creates the blobs/<alg> directory when it is missing", async () => {
    const store = await newStore();
    await rm(join(store.location, "blobs"), { recursive: true });
    const descriptor = blob("x");
    assert.equal(await store.push(descriptor, streamOf("x")), "copied");
    assert.equal(await readFile(store.blobPath(descriptor.digest), "utf8"), "x");
  });

  it("takes many pushes at once, each landing whole, and removes the temp area afterwards", async () => {
    const store = await newStore();
    const contents = Array.from({ length: 24 }, (_, i) => `blob number ${i} `.repeat(1000 + i));
    const outcomes = await Promise.all(contents.map((c) => store.push(blob(c), streamOf(c))));
    assert.deepEqual(new Set(outcomes), new Set(["copied"]));
    for (const c of contents) assert.equal(await readFile(store.blobPath(blob(c).digest), "utf8"), c);
    assert.ok(!existsSync(join(store.location, tempDirName)));
  });
});

describe("LayoutStore: the temp area is created lazily", () => {
  it("init, open and openOrInit create no .roci-tmp; a push removes it when done", async () => {
    const dir = await tempDir();
    const fresh = await LayoutStore.init(join(dir, "a"));
    assert.ok(!existsSync(join(fresh.location, tempDirName)));
    await LayoutStore.open(fresh.location);
    await LayoutStore.openOrInit(join(dir, "b"));
    await LayoutStore.openOrInit(fresh.location);
    assert.ok(!existsSync(join(dir, "a", tempDirName)));
    assert.ok(!existsSync(join(dir, "b", tempDirName)));
    assert.deepEqual(await listTree(join(dir, "a")), ["blobs", "blobs/sha256", "index.json", "oci-layout"]);
    await fresh.push(blob("y"), streamOf("y"));
    await assert.rejects(fresh.push(blob("z"), streamOf("w")));
    assert.ok(!existsSync(join(fresh.location, tempDirName)));
  });
});

describe("LayoutStore.pushFile", () => {
  const source = async (content: string, fileMode: number, dir?: string): Promise<string> => {
    const path = join(dir ?? (await tempDir()), `source-${Math.random().toString(16).slice(2)}`);
    await writeFile(path, content);
    await chmod(path, fileMode);
    return path;
  };

  it("hard-links a read-only (0444) source on the same filesystem, leaving its mode alone", async () => {
    const store = await newStore();
    const content = "a read-only build output";
    const path = await source(content, 0o444);
    const descriptor = blob(content);
    assert.equal(await store.pushFile(descriptor, path), "linked");
    const target = store.blobPath(descriptor.digest);
    assert.equal((await stat(target)).ino, (await stat(path)).ino);
    assert.equal(await mode(path), 0o444, "the source's mode is untouched");
    assert.equal(await readFile(path, "utf8"), content);
    assert.ok(!existsSync(join(store.location, tempDirName)));
  });

  it("copies a writable source (another inode, made 0444), leaving the source as it was", async () => {
    const store = await newStore();
    const content = "a writable file";
    const path = await source(content, 0o644);
    const descriptor = blob(content);
    assert.equal(await store.pushFile(descriptor, path), "copied");
    const target = store.blobPath(descriptor.digest);
    assert.notEqual((await stat(target)).ino, (await stat(path)).ino);
    assert.equal(await mode(target), 0o444);
    assert.equal(await mode(path), 0o644);
    assert.equal(await readFile(target, "utf8"), content);
  });

  it("copies a read-only source on another filesystem (EXDEV)", {
    skip: !existsSync("/dev/shm"),
  }, async () => {
    const shm = await mkdtemp("/dev/shm/roci-store-test-");
    removeAtExit(shm);
    if ((await stat(shm)).dev === (await stat(tmpdir())).dev) return;
    const store = await newStore();
    const content = "on tmpfs";
    const path = await source(content, 0o444, shm);
    const descriptor = blob(content);
    assert.equal(await store.pushFile(descriptor, path), "copied");
    assert.equal(await readFile(store.blobPath(descriptor.digest), "utf8"), content);
  });

  it("refuses a source whose size differs from the descriptor's, before writing", async () => {
    const store = await newStore();
    const before = await listTree(store.location);
    for (const fileMode of [0o444, 0o644]) {
      const path = await source("twelve bytes", fileMode);
      const descriptor = { ...blob("twelve bytes"), size: 13 };
      await assert.rejects(store.pushFile(descriptor, path), isCode("SIZE_MISMATCH", path));
    }
    assert.deepEqual(await listTree(store.location), before);
  });

  it("detects a corrupt read-only source before anything lands, though it would be linked", async () => {
    const store = await newStore();
    const before = await listTree(store.location);
    const path = await source("corrupt!", 0o444);
    const descriptor = blob("original");
    assert.equal(descriptor.size, 8);
    await assert.rejects(store.pushFile(descriptor, path), isCode("DIGEST_MISMATCH"));
    assert.deepEqual(await listTree(store.location), before);
    assert.equal((await stat(path)).nlink, 1, "never linked");
  });

  it("detects a corrupt writable source (it is copied, then verified before the rename)", async () => {
    const store = await newStore();
    const before = await listTree(store.location);
    const path = await source("corrupt!", 0o644);
    await assert.rejects(store.pushFile(blob("original"), path), isCode("DIGEST_MISMATCH"));
    assert.deepEqual(await listTree(store.location), before);
  });

  it("returns exists for a valid blob already there, without linking or copying", async () => {
    const store = await newStore();
    const content = "twice";
    const descriptor = blob(content);
    await store.push(descriptor, streamOf(content));
    const ino = (await stat(store.blobPath(descriptor.digest))).ino;
    const path = await source(content, 0o444);
    assert.equal(await store.pushFile(descriptor, path), "exists");
    assert.equal((await stat(store.blobPath(descriptor.digest))).ino, ino);
    assert.equal((await stat(path)).nlink, 1);
  });

  it("never changes a linked read-only input when the same blob is pushed again", {}, async () => {
    const store = await newStore();
    const content = "a Bazel output, chmod a-w";
    const path = await source(content, 0o444);
    const old = new Date(Date.parse("2024-01-01T00:00:00Z"));
    await utimes(path, old, old);
    const descriptor = blob(content);
    assert.equal(await store.pushFile(descriptor, path), "linked");
    const before = await stat(path);
    assert.equal(await store.pushFile(descriptor, path), "exists");
    assert.equal(await store.push(descriptor, streamOf(content)), "exists");
    const afterwards = await stat(path);
    assert.equal(afterwards.mtimeMs, before.mtimeMs, "the input's mtime changed");
    assert.equal(afterwards.ctimeMs, before.ctimeMs, "the input's ctime changed");
  });
});

describe("LayoutStore: index.json updates", () => {
  const manifestA = blob('{"a":1}', MediaType.ociManifest);
  const manifestB = blob('{"b":2}', MediaType.ociManifest);

  it("tag sets org.opencontainers.image.ref.name", async () => {
    const store = await newStore();
    await store.tag(manifestA, [parseEntryName("v1")]);
    const { manifests } = await readIndex(store.location);
    assert.deepEqual(manifests, [{ ...manifestA, annotations: { [Annotation.refName]: "v1" } }]);
    assert.equal((await store.resolve({ tag: "v1" })).digest, manifestA.digest);
  });

  it("a full reference sets io.containerd.image.name (normalised) and ref.name = its tag", async () => {
    const store = await newStore();
    await store.tag(manifestA, [parseEntryName("app:1"), parseEntryName("example.com/team/app:2.0")]);
    const { manifests } = await readIndex(store.location);
    assert.deepEqual(
      manifests.map((entry) => entry.annotations),
      [
        { [Annotation.containerdName]: "docker.io/library/app:1", [Annotation.refName]: "1" },
        { [Annotation.containerdName]: "example.com/team/app:2.0", [Annotation.refName]: "2.0" },
      ],
    );
    assert.equal((await store.resolve({ tag: "2.0" })).digest, manifestA.digest);
  });

  it("several names in one update: one entry each", async () => {
    const store = await newStore();
    await store.tag(manifestA, ["v1", "latest", "stable"].map(parseEntryName));
    assert.deepEqual((await store.tags()).sort(), ["latest", "stable", "v1"]);
  });

  it("retagging moves the name: the entry that carried it is dropped, other names stay", async () => {
    const store = await newStore();
    await store.tag(manifestA, ["v1", "keep"].map(parseEntryName));
    await store.tag(manifestB, [parseEntryName("v1")]);
    const { manifests } = await readIndex(store.location);
    assert.deepEqual(
      manifests.map((entry) => [entry.digest, annotationsOf(entry)[Annotation.refName]]),
      [
        [manifestA.digest, "keep"],
        [manifestB.digest, "v1"],
      ],
    );
    // A full reference moves by its full name, not by its tag part.
    await store.tag(manifestA, [parseEntryName("example.com/app:v1")]);
    await store.tag(manifestB, [parseEntryName("example.com/app:v1")]);
    const entries = (await readIndex(store.location)).manifests.filter(
      (entry) => annotationsOf(entry)[Annotation.containerdName] === "example.com/app:v1",
    );
    assert.deepEqual(
      entries.map((entry) => entry.digest),
      [manifestB.digest],
    );
  });

  it("retagging a digest with the name it already has keeps one entry", async () => {
    const store = await newStore();
    await store.tag(manifestA, [parseEntryName("v1")]);
    await store.tag(manifestA, [parseEntryName("v1")]);
    assert.equal((await readIndex(store.location)).manifests.length, 1);
  });

  it("untag removes a name; TAG_NOT_FOUND when no entry carries it", async () => {
    const store = await newStore();
    await store.tag(manifestA, ["v1", "v2", "example.com/app:v3"].map(parseEntryName));
    await store.untag(parseEntryName("v1"));
    await store.untag(parseEntryName("example.com/app:v3"));
    assert.deepEqual(await store.tags(), ["v2"]);
    await assert.rejects(store.untag(parseEntryName("v1")), isCode("TAG_NOT_FOUND", "v1"));
    // The tag part of a full reference is not the plain tag: untag v9 leaves example.com/app:v9.
    await store.tag(manifestA, [parseEntryName("example.com/app:v9")]);
    const before = await readFile(join(store.location, "index.json"));
    await assert.rejects(store.untag(parseEntryName("v9")), isCode("TAG_NOT_FOUND"));
    assert.ok(
      (await readFile(join(store.location, "index.json"))).equals(before),
      "a failed untag writes nothing",
    );
    assert.deepEqual((await store.tags()).sort(), ["example.com/app:v9", "v2", "v9"].sort());
  });

  it("keeps entries, annotations and fields it does not understand", async () => {
    const store = await newStore();
    const foreign = {
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      "x-vendor": { nested: [1, "two", { three: null }] },
      annotations: { "org.example.index": "kept" },
      manifests: [
        {
          mediaType: "application/vnd.example.unknown+json",
          digest: digestOf(Buffer.from("unknown")),
          size: 7,
          annotations: { "org.example.thing": "x", [Annotation.refName]: "thing" },
          "x-extra-field": true,
        },
        {
          ...manifestA,
          artifactType: "application/vnd.example.sbom",
          urls: ["https://example.com/blob"],
          platform: { architecture: "arm64", os: "linux", variant: "v8", "os.features": ["a"] },
          annotations: {
            [Annotation.refName]: "old",
            "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
          },
        },
        { ...manifestB, annotations: { "vnd.docker.reference.type": "attestation-manifest" } },
      ],
    };
    await writeFile(join(store.location, "index.json"), JSON.stringify(foreign, null, 2));
    await store.tag(manifestB, [parseEntryName("new")]);
    await store.tag(manifestA, [parseEntryName("other")]);
    await store.untag(parseEntryName("other"));
    const written = (await readIndex(store.location)) as Record<string, unknown>;
    const expected = {
      ...foreign,
      manifests: [...foreign.manifests, { ...manifestB, annotations: { [Annotation.refName]: "new" } }],
    };
    assert.deepEqual(written, expected);
  });

  it("a renamed entry keeps the descriptor's other annotations and fields", async () => {
    const store = await newStore();
    const withExtras: Descriptor = {
      ...manifestA,
      platform: { architecture: "amd64", os: "linux" },
      annotations: { [Annotation.refName]: "old", "org.example.keep": "me" },
    };
    await store.tag(withExtras, [parseEntryName("new")]);
    assert.deepEqual((await readIndex(store.location)).manifests, [
      { ...withExtras, annotations: { "org.example.keep": "me", [Annotation.refName]: "new" } },
    ]);
  });

  it("replaces index.json by rename (a new inode); a reader holding the old one sees it whole", async () => {
    const store = await newStore();
    await store.tag(manifestA, [parseEntryName("v1")]);
    const path = join(store.location, "index.json");
    const oldText = await readFile(path, "utf8");
    const oldInode = (await stat(path)).ino;
    const reader = await open(path, "r");
    try {
      await store.tag(manifestB, [parseEntryName("v2")]);
      assert.notEqual((await stat(path)).ino, oldInode, "index.json was rewritten in place");
      assert.equal(await reader.readFile("utf8"), oldText, "the old file was changed");
    } finally {
      await reader.close();
    }
    const names = (await readdir(store.location)).filter((name) => name.startsWith("index.json"));
    assert.deepEqual(names.sort(), ["index.json", "index.json.lock"], "no temp file is left");
  });

  it("loses no update when many writers tag at once (each with its own store)", async () => {
    const store = await newStore();
    const stores = await Promise.all(Array.from({ length: 12 }, () => LayoutStore.open(store.location)));
    await Promise.all(stores.map((s, i) => s.tag(manifestA, [parseEntryName(`t${i}`)])));
    assert.deepEqual((await store.tags()).sort(), Array.from({ length: 12 }, (_, i) => `t${i}`).sort());
  });

  it("updateIndex creates index.json when it is missing", async () => {
    const store = await newStore();
    await rm(join(store.location, "index.json"));
    await store.tag(manifestA, [parseEntryName("v1")]);
    assert.equal((await store.resolve({ tag: "v1" })).digest, manifestA.digest);
  });
});

describe("LayoutStore.init", () => {
  it("creates oci-layout, index.json and blobs/sha256 in a missing directory and in an empty one", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "empty"));
    for (const name of ["missing/deeper", "empty"]) {
      const root = join(dir, name);
      const store = await LayoutStore.init(root);
      assert.equal(store.location, root);
      assert.deepEqual(await listTree(root), ["blobs", "blobs/sha256", "index.json", "oci-layout"]);
      assert.deepEqual(JSON.parse(await readFile(join(root, "oci-layout"), "utf8")), {
        imageLayoutVersion: "1.0.0",
      });
      assert.deepEqual(JSON.parse(await readFile(join(root, "index.json"), "utf8")), {
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [],
      });
      assert.deepEqual(await (await LayoutReader.open(root)).tags(), []);
    }
  });

  it("refuses a non-empty directory and an existing layout with CONFLICT, changing nothing", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "busy"));
    await writeFile(join(dir, "busy", "notes.txt"), "mine");
    const layout = await copyFixture("single");
    for (const root of [join(dir, "busy"), layout]) {
      await expectTreeUnchanged(root, () => assert.rejects(LayoutStore.init(root), isCode("CONFLICT", root)));
    }
    await assert.rejects(
      LayoutStore.init(join(dir, "busy", "notes.txt")),
      isCode("INVALID_LAYOUT", "notes.txt"),
    );
  });

  it("with force, adds a layout beside other files and keeps an existing layout's images", async () => {
    const dir = await tempDir();
    const busy = join(dir, "busy");
    await mkdir(busy);
    await writeFile(join(busy, "notes.txt"), "mine");
    await LayoutStore.init(busy, { force: true });
    assert.deepEqual(await listTree(busy), [
      "blobs",
      "blobs/sha256",
      "index.json",
      "notes.txt",
      "oci-layout",
    ]);
    assert.equal(await readFile(join(busy, "notes.txt"), "utf8"), "mine");

    const { single } = (await fixtures()).layouts;
    const layout = await copyFixture("single");
    const index = await readFile(join(layout, "index.json"));
    const store = await LayoutStore.init(layout, { force: true });
    assert.ok((await readFile(join(layout, "index.json"))).equals(index));
    assert.equal((await store.resolve({ tag: "v1" })).digest, single.refs.v1.digest);
  });

  it("openOrInit opens an existing layout, initialises a missing or empty dir, refuses other dirs", async () => {
    const dir = await tempDir();
    const layout = await copyFixture("single");
    const index = await readFile(join(layout, "index.json"));
    await LayoutStore.openOrInit(layout);
    assert.ok((await readFile(join(layout, "index.json"))).equals(index));
    await mkdir(join(dir, "busy"));
    await writeFile(join(dir, "busy", "x"), "");
    await assert.rejects(LayoutStore.openOrInit(join(dir, "busy")), isCode("INVALID_LAYOUT"));
  });

  it("makes a layout skopeo reads once something is tagged into it", async () => {
    const { single } = (await fixtures()).layouts;
    const root = join(await tempDir(), "out");
    const store = await LayoutStore.init(root);
    const source = await LayoutReader.open(single.path);
    const result = await copyImage(source, await source.resolve({ tag: "v1" }), store);
    await store.tag(result.root, [parseEntryName("v1")]);
    const { stdout } = await execFileAsync("skopeo", ["inspect", `oci:${root}:v1`]);
    const inspected = JSON.parse(stdout) as { Digest: string; Layers: string[] };
    assert.equal(inspected.Digest, single.refs.v1.digest);
    assert.deepEqual(
      inspected.Layers,
      single.image.layers.map((layer) => layer.digest),
    );
    const { stdout: raw } = await execFileAsync("skopeo", ["inspect", "--raw", `oci:${root}`]);
    assert.equal(digestOf(Buffer.from(raw)), single.refs.v1.digest, "the only image, without a tag");
  });
});

describe("LayoutStore: a destination it cannot write is refused before any write", () => {
  /** A temp dir holding a copy of `single` (`layout`) and an empty directory (`empty`). */
  const mountable = async (): Promise<string> => {
    const dir = await tempDir();
    await mkdir(join(dir, "empty"));
    await execFileAsync("cp", ["-a", (await fixtures()).layouts.single.path, join(dir, "layout")]);
    return dir;
  };

  it("on a read-only bind mount, open, openOrInit, init --force and `roci tag` fail with READ_ONLY", {
    skip: needsRoot,
  }, async () => {
    const dir = await mountable();
    await expectTreeUnchanged(dir, () =>
      withReadOnlyBindMount(dir, async (mounted) => {
        const layout = join(mounted, "layout");
        await assert.rejects(LayoutStore.open(layout), isCode("READ_ONLY", layout));
        await assert.rejects(LayoutStore.openOrInit(layout), isCode("READ_ONLY", layout));
        await assert.rejects(LayoutStore.init(layout, { force: true }), isCode("READ_ONLY", layout));
        const tag = await roci("tag", `${layout}:v1`, "v2");
        assert.equal(tag.code, 1, tag.stderr);
        assert.match(tag.stderr, /\[READ_ONLY\]/);
        assert.ok(tag.stderr.includes(layout), tag.stderr);
        const untag = await roci("untag", `${layout}:v1`);
        assert.equal(untag.code, 1, untag.stderr);
        assert.match(untag.stderr, /\[READ_ONLY\]/);
      }),
    );
  });

  it("on a read-only bind mount, init and openOrInit of an empty or missing directory fail with READ_ONLY", {
    skip: needsRoot,
  }, async () => {
    const dir = await mountable();
    await expectTreeUnchanged(dir, () =>
      withReadOnlyBindMount(dir, async (mounted) => {
        for (const name of ["empty", "missing", "missing/deeper"]) {
          const root = join(mounted, name);
          await assert.rejects(LayoutStore.init(root), isCode("READ_ONLY", root));
          await assert.rejects(LayoutStore.openOrInit(root), isCode("READ_ONLY", root));
        }
        const init = await roci("init", join(mounted, "empty"));
        assert.equal(init.code, 1, init.stderr);
        assert.match(init.stderr, /\[READ_ONLY\]/);
      }),
    );
  });

  it("as uid 65534 on a chmod a-w copy, `roci tag` exits non-zero with READ_ONLY, changing nothing", {
    skip: needsRoot,
  }, async () => {
    const { single } = (await fixtures()).layouts;
    await withUnwritableCopy(single.path, async (copy) => {
      const before = await snapshotTree(copy);
      const result = await runRoci(["tag", `${copy}:v1`, "v2"], { asNobody: true });
      assert.notEqual(result.code, 0);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /READ_ONLY/);
      assert.ok(result.stderr.includes(copy), result.stderr);
      const untag = await runRoci(["untag", `${copy}:v1`], { asNobody: true });
      assert.equal(untag.code, 1, untag.stderr);
      assert.match(untag.stderr, /READ_ONLY/);
      assert.deepEqual(diffSnapshots(before, await snapshotTree(copy)), []);
    });
  });

  describe("--read-only and ROCI_READ_ONLY=1 make writing commands refuse before they start", () => {
    const writing = (layout: string, fresh: string): Array<[string, string[]]> => [
      ["tag", ["tag", `${layout}:v1`, "v2"]],
      ["untag", ["untag", `${layout}:v1`]],
      ["copy", ["copy", `${layout}:v1`, `${fresh}:v1`]],
      ["init", ["init", fresh]],
      ["gc", ["gc", "--grace", "0", layout]],
    ];

    it("--read-only: tag, untag, copy, init and gc exit 1 with READ_ONLY; gc --dry-run runs", async () => {
      const layout = await copyFixture("single");
      const fresh = join(await tempDir(), "fresh");
      await expectTreeUnchanged(layout, async () => {
        for (const [name, args] of writing(layout, fresh)) {
          const result = await roci("--read-only", ...args);
          assert.equal(result.code, 1, `${name}: ${result.stderr}`);
          assert.match(result.stderr, /READ_ONLY/, name);
          assert.ok(result.stderr.includes(`roci ${name}`), result.stderr);
        }
        const dry = await roci("--read-only", "gc", "--dry-run", "--grace", "0", layout);
        assert.equal(dry.code, 0, dry.stderr);
      });
      assert.ok(!existsSync(fresh), "copy and init created nothing");
    });

    it("ROCI_READ_ONLY=1 in the environment does the same", async () => {
      const layout = await copyFixture("single");
      const fresh = join(await tempDir(), "fresh");
      await expectTreeUnchanged(layout, async () => {
        const runs = await Promise.all(
          writing(layout, fresh).map(async ([name, args]) => {
            return [name, await runRoci(args, { env: { ROCI_READ_ONLY: "1" } })] as const;
          }),
        );
        for (const [name, result] of runs) {
          assert.equal(result.code, 1, `${name}: ${result.stderr}`);
          assert.match(result.stderr, /READ_ONLY/, name);
        }
        const dry = await runRoci(["gc", "--dry-run", layout], { env: { ROCI_READ_ONLY: "1" } });
        assert.equal(dry.code, 0, dry.stderr);
      });
      assert.ok(!existsSync(fresh));
    });
  });
});
