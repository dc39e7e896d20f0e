/**
 * Garbage collection (DESIGN.md "Write discipline"): only blobs unreachable from index.json — through
 * nested indexes, manifests and referrers — and older than the grace period go; a dry run reports
 * exactly that and deletes nothing; stale temp files go, lock files stay; unsure means keep.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { main } from "../cli/program.ts";
import { digestOf } from "../digest/hash.ts";
import { isRociError } from "../errors.ts";
import { MediaType } from "../spec/media-types.ts";
import { copyFixture, fixtures } from "../test-support/fixtures.ts";
import {
  addBlob,
  addJsonBlob,
  type BlobDescriptor,
  readIndex,
  tagged,
  writeIndex,
} from "../test-support/layout-edit.ts";
import { diffSnapshots, snapshotTree } from "../test-support/readonly.ts";
import { tempDir } from "../test-support/scratch.ts";
import { collectGarbage, defaultGraceMs, type GcReport, planGarbage } from "./gc.ts";
import { LayoutReader } from "./layout-reader.ts";
import { LayoutStore, tempDirName } from "./layout-store.ts";
import { EXCLUSIVE_FILE, FLOCK_FILE } from "./lock.ts";
import { parseEntryName } from "./naming.ts";

const execFileAsync = promisify(execFile);
const hour = 3600_000;
const minute = 60_000;

async function newLayout(): Promise<LayoutStore> {
  return LayoutStore.init(join(await tempDir("roci-gc-test-"), "layout"));
}

const blobFile = (layout: string, digest: string): string =>
  join(layout, "blobs", "sha256", digest.slice("sha256:".length));

async function setAge(path: string, now: number, ageMs: number): Promise<void> {
  const time = new Date(now - ageMs);
  await utimes(path, time, time);
}

const sorted = (values: readonly string[]): string[] => [...values].sort();

const digestsOf = (entries: ReadonlyArray<{ digest: string }>): string[] =>
  entries.map((entry) => entry.digest).sort();

/** Runs the CLI in this process. */
async function roci(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const code = await main(args, { stdout, stderr } as unknown as Parameters<typeof main>[1]);
  stdout.end();
  stderr.end();
  return { code, stdout: (await buffer(stdout)).toString(), stderr: (await buffer(stderr)).toString() };
}

// ---------------------------------------------------------------------------------------------------
// A random image graph, its model of reachability, and its materialisation in a layout

type Kind = "manifest" | "index" | "referrer";

/** Indices into lists whose lengths are only known later: taken modulo the length. */
const pick = fc.nat({ max: 1_000 });
const picks = (max: number, min = 0) => fc.array(pick, { minLength: min, maxLength: max });
/** Mostly present: some layers and manifests are missing, as in a partial layout. */
const present = fc.nat({ max: 3 }).map((n) => n > 0);

const recipe = fc.record({
  layers: fc.array(present, { minLength: 1, maxLength: 8 }),
  configs: fc.integer({ min: 1, max: 4 }),
  manifests: fc.array(fc.record({ config: pick, layers: picks(3), present }), { minLength: 1, maxLength: 6 }),
  indexes: fc.array(fc.record({ manifests: picks(3, 1), indexes: picks(2) }), { maxLength: 4 }),
  referrers: fc.array(
    fc.record({
      subjectKind: fc.constantFrom<Kind>("manifest", "index", "referrer"),
      subject: pick,
      config: pick,
      layers: picks(2),
    }),
    { maxLength: 5 },
  ),
  entries: fc.array(
    fc.record({
      kind: fc.constantFrom<Kind>("manifest", "index", "referrer"),
      i: pick,
      tag: fc.option(fc.constantFrom("latest", "v1", "v2", "dev"), { nil: undefined }),
    }),
    { maxLength: 4 },
  ),
  /** Per blob, in creation order (cyclically): older than the grace period, or younger. */
  old: fc.array(fc.boolean(), { minLength: 1, maxLength: 48 }),
});

type RecipeValue = typeof recipe extends fc.Arbitrary<infer T> ? T : never;

interface GraphNode {
  descriptor: BlobDescriptor;
  children: GraphNode[];
  present: boolean;
  old: boolean;
}

interface Graph {
  nodes: GraphNode[];
  referrers: Array<{ node: GraphNode; subject: GraphNode }>;
  roots: GraphNode[];
}

const unique = (values: readonly number[], length: number): number[] => [
  ...new Set(values.map((v) => v % length)),
];

/** Writes the graph of `r` into `layout` (children first) and returns it. */
async function materialise(layout: string, r: RecipeValue): Promise<Graph> {
  const nodes: GraphNode[] = [];
  const add = async (
    content: string | object,
    mediaType: string,
    children: GraphNode[],
    isPresent = true,
  ): Promise<GraphNode> => {
    const descriptor =
      typeof content === "string"
        ? await addBlob(layout, content, mediaType)
        : await addJsonBlob(layout, content, mediaType);
    if (!isPresent) await unlink(blobFile(layout, descriptor.digest));
    const node = { descriptor, children, present: isPresent, old: r.old[nodes.length % r.old.length]! };
    nodes.push(node);
    return node;
  };
  const plain = ({ mediaType, digest, size }: BlobDescriptor) => ({ mediaType, digest, size });

  const layers: GraphNode[] = [];
  for (const [i, isPresent] of r.layers.entries()) {
    layers.push(await add(`layer ${i}\n`, MediaType.ociLayerGzip, [], isPresent));
  }
  // Config 0 is the OCI empty descriptor, which referrers (and some manifests) share.
  const configs: GraphNode[] = [await add("{}", MediaType.ociEmpty, [])];
  for (let i = 1; i < r.configs; i++) {
    configs.push(
      await add({ architecture: "amd64", os: "linux", "test.config": i }, MediaType.ociConfig, []),
    );
  }
  const manifestDocument = (label: string, config: GraphNode, children: GraphNode[], extra = {}) => ({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: plain(config.descriptor),
    layers: children.map((child) => plain(child.descriptor)),
    annotations: { "test.node": label },
    ...extra,
  });

  const manifests: GraphNode[] = [];
  for (const [i, m] of r.manifests.entries()) {
    const config = configs[m.config % configs.length]!;
    const children = unique(m.layers, layers.length).map((j) => layers[j]!);
    manifests.push(
      await add(
        manifestDocument(`manifest ${i}`, config, children),
        MediaType.ociManifest,
        [config, ...children],
        m.present,
      ),
    );
  }
  const indexes: GraphNode[] = [];
  for (const [i, x] of r.indexes.entries()) {
    const children = [
      ...unique(x.manifests, manifests.length).map((j) => manifests[j]!),
      // Nested: only earlier indexes, so the graph stays acyclic.
      ...(i === 0 ? [] : unique(x.indexes, i).map((j) => indexes[j]!)),
    ];
    const document = {
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: children.map((child) => plain(child.descriptor)),
      annotations: { "test.node": `index ${i}` },
    };
    indexes.push(await add(document, MediaType.ociIndex, children));
  }
  const referrers: Graph["referrers"] = [];
  for (const [i, x] of r.referrers.entries()) {
    const earlier = referrers.map((referrer) => referrer.node);
    const pool =
      x.subjectKind === "index" && indexes.length > 0
        ? indexes
        : x.subjectKind === "referrer" && earlier.length > 0
          ? earlier
          : manifests;
    const subject = pool[x.subject % pool.length]!;
    const config = configs[x.config % configs.length]!;
    const children = unique(x.layers, layers.length).map((j) => layers[j]!);
    const document = manifestDocument(`referrer ${i}`, config, children, {
      artifactType: "application/vnd.example.signature",
      subject: plain(subject.descriptor),
    });
    const node = await add(document, MediaType.ociManifest, [config, ...children]);
    referrers.push({ node, subject });
  }

  const pools: Record<Kind, GraphNode[]> = {
    manifest: manifests,
    index: indexes.length > 0 ? indexes : manifests,
    referrer: referrers.length > 0 ? referrers.map((referrer) => referrer.node) : manifests,
  };
  const roots = r.entries.map((entry) => pools[entry.kind][entry.i % pools[entry.kind].length]!);
  await writeIndex(
    layout,
    r.entries.map((entry, k) =>
      entry.tag === undefined ? plain(roots[k]!.descriptor) : tagged(plain(roots[k]!.descriptor), entry.tag),
    ),
  );
  return { nodes, referrers, roots };
}

/** The digests the model says are reachable: from the roots, then referrers of anything reachable. */
function reachableIn(graph: Graph): Set<string> {
  const reachable = new Set<string>();
  const visit = (node: GraphNode): void => {
    if (reachable.has(node.descriptor.digest)) return;
    reachable.add(node.descriptor.digest);
    if (node.present) for (const child of node.children) visit(child);
  };
  for (const root of graph.roots) visit(root);
  for (let changed = true; changed; ) {
    changed = false;
    for (const { node, subject } of graph.referrers) {
      if (reachable.has(subject.descriptor.digest) && !reachable.has(node.descriptor.digest)) {
        visit(node);
        changed = true;
      }
    }
  }
  return reachable;
}

describe("gc: what goes and what stays (property)", () => {
  it("keeps everything reachable and young; removes exactly the old unreachable blobs the dry run lists", async () => {
    await fc.assert(
      fc.asyncProperty(recipe, async (r) => {
        const store = await newLayout();
        const layout = store.location;
        const graph = await materialise(layout, r);
        const now = Date.now();
        const distinct = new Map(graph.nodes.map((node) => [node.descriptor.digest, node]));
        for (const [k, node] of [...distinct.values()].entries()) {
          if (!node.present) continue;
          const age = node.old ? defaultGraceMs + (k + 1) * minute : (k * defaultGraceMs) / 100;
          await setAge(blobFile(layout, node.descriptor.digest), now, age);
        }
        const reachable = reachableIn(graph);
        const onDisk = [...distinct.values()].filter((node) => node.present);
        const unreachable = onDisk.filter((node) => !reachable.has(node.descriptor.digest));
        const expectedRemoved = digestsOf(
          unreachable.filter((node) => node.old).map((node) => node.descriptor),
        );
        const expectedYoung = digestsOf(
          unreachable.filter((node) => !node.old).map((node) => node.descriptor),
        );

        const before = await snapshotTree(layout);
        const plan = await planGarbage(await LayoutReader.open(layout), { now });
        assert.deepEqual(
          diffSnapshots(before, await snapshotTree(layout)),
          [],
          "the dry run changed the layout",
        );
        assert.equal(plan.dryRun, true);
        assert.deepEqual(digestsOf(plan.removed), expectedRemoved);
        assert.deepEqual(digestsOf(plan.young), expectedYoung);
        assert.equal(plan.reachable, reachable.size);
        assert.equal(
          plan.bytesReclaimed,
          plan.removed.reduce((sum, entry) => sum + entry.size, 0),
        );

        const report = await collectGarbage(store, { now });
        assert.equal(report.dryRun, false);
        assert.deepEqual(digestsOf(report.removed), digestsOf(plan.removed));
        assert.deepEqual(digestsOf(report.young), digestsOf(plan.young));
        for (const node of onDisk) {
          const { digest } = node.descriptor;
          const kept = existsSync(blobFile(layout, digest));
          if (reachable.has(digest)) assert.ok(kept, `reachable ${digest} was removed`);
          else assert.equal(kept, !node.old, `unreachable ${node.old ? "old" : "young"} ${digest}`);
        }
        // A second run finds nothing more to do.
        assert.deepEqual((await collectGarbage(store, { now })).removed, []);
      }),
      { numRuns: 30 },
    );
  });
});

describe("gc: referrers, by example", () => {
  it("keeps a referrer of a reachable manifest, and the referrer's own blobs, however old", async () => {
    const store = await newLayout();
    const layout = store.location;
    const layer = await addBlob(layout, "layer", MediaType.ociLayerGzip);
    const config = await addJsonBlob(layout, { os: "linux", architecture: "amd64" }, MediaType.ociConfig);
    const manifest = await addJsonBlob(
      layout,
      { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] },
      MediaType.ociManifest,
    );
    const empty = await addBlob(layout, "{}", MediaType.ociEmpty);
    const sbom = await addBlob(layout, "sbom-content", "application/spdx+json");
    const referrer = await addJsonBlob(
      layout,
      {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        artifactType: "application/spdx+json",
        config: empty,
        layers: [sbom],
        subject: manifest,
      },
      MediaType.ociManifest,
    );
    const orphanSbom = await addBlob(layout, "orphan-sbom", "application/spdx+json");
    const orphan = await addJsonBlob(
      layout,
      {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: empty,
        layers: [orphanSbom],
        subject: { mediaType: MediaType.ociManifest, digest: digestOf(Buffer.from("gone")), size: 4 },
      },
      MediaType.ociManifest,
    );
    await writeIndex(layout, [tagged(manifest, "v1")]);
    const now = Date.now();
    for (const blob of [layer, config, manifest, empty, sbom, referrer, orphanSbom, orphan]) {
      await setAge(blobFile(layout, blob.digest), now, 2 * defaultGraceMs);
    }
    const report = await collectGarbage(store, { now });
    assert.deepEqual(digestsOf(report.removed), digestsOf([orphan, orphanSbom]));
    for (const blob of [layer, config, manifest, empty, sbom, referrer]) {
      assert.ok(existsSync(blobFile(layout, blob.digest)), blob.mediaType);
    }
  });
});

describe("gc: temp files and lock files", () => {
  it("removes temp files older than the grace period, keeps younger ones, never removes lock files", async () => {
    const store = await newLayout();
    const layout = store.location;
    await store.withIndexLock(async () => undefined); // leaves index.json.lock, as buildkit would
    await mkdir(join(layout, tempDirName));
    const now = Date.now();
    const files: Array<[string, number, boolean]> = [
      [join(tempDirName, "0123456789abcdef.4242.a1b2c3d4e5f6"), 2 * hour, false],
      [join(tempDirName, "fedcba9876543210.4243.0a0b0c0d0e0f"), 5 * minute, true],
      ["index.json.4242.a1b2c3d4e5f6.tmp", 2 * hour, false],
      ["index.json.4243.0a0b0c0d0e0f.tmp", 5 * minute, true],
      [FLOCK_FILE, 30 * 24 * hour, true],
      [EXCLUSIVE_FILE, 30 * 24 * hour, true],
      ["index.json.bak", 30 * 24 * hour, true],
      ["notes.tmp", 30 * 24 * hour, true],
    ];
    for (const [name, age] of files) {
      const path = join(layout, name);
      if (!existsSync(path)) await writeFile(path, "left behind\n");
      await setAge(path, now, age);
    }
    const plan = await planGarbage(await LayoutReader.open(layout), { now });
    const stale = files.filter(([, , kept]) => !kept).map(([name]) => name);
    assert.deepEqual([...plan.tempFiles].sort(), [...stale].sort());
    const report = await collectGarbage(store, { now });
    assert.deepEqual([...report.tempFiles].sort(), [...stale].sort());
    for (const [name, , kept] of files) assert.equal(existsSync(join(layout, name)), kept, name);
    assert.ok(existsSync(join(layout, tempDirName)), "kept: a young temp file is still in it");

    await unlink(join(layout, tempDirName, "fedcba9876543210.4243.0a0b0c0d0e0f"));
    await collectGarbage(store, { now });
    assert.ok(!existsSync(join(layout, tempDirName)), "an empty temp area is removed");
    assert.ok(existsSync(join(layout, FLOCK_FILE)) && existsSync(join(layout, EXCLUSIVE_FILE)));
  });
});

describe("gc: unsure means keep", () => {
  it("stops with an error and deletes nothing when a reachable manifest is corrupt", async () => {
    const store = await newLayout();
    const layout = store.location;
    const layer = await addBlob(layout, "layer", MediaType.ociLayerGzip);
    const config = await addJsonBlob(layout, { os: "linux" }, MediaType.ociConfig);
    const manifest = await addJsonBlob(
      layout,
      { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] },
      MediaType.ociManifest,
    );
    const garbage = await addBlob(layout, "garbage", MediaType.ociLayerGzip);
    await writeIndex(layout, [tagged(manifest, "v1")]);
    const path = blobFile(layout, manifest.digest);
    const bytes = await readFile(path);
    bytes[10] = bytes[10]! ^ 0x20;
    await writeFile(path, bytes);
    const now = Date.now();
    for (const blob of [layer, config, manifest, garbage]) {
      await setAge(blobFile(layout, blob.digest), now, 3 * defaultGraceMs);
    }
    await store.withIndexLock(async () => undefined);
    await writeFile(join(layout, "index.json.1.abcdef.tmp"), "stale");
    await setAge(join(layout, "index.json.1.abcdef.tmp"), now, 3 * defaultGraceMs);
    const before = await snapshotTree(layout);
    await assert.rejects(collectGarbage(store, { now }), (error: unknown) => {
      assert.ok(isRociError(error), String(error));
      assert.equal(error.code, "DIGEST_MISMATCH", error.message);
      return true;
    });
    await assert.rejects(planGarbage(store, { now }));
    assert.deepEqual(diffSnapshots(before, await snapshotTree(layout)), []);
  });

  it("stops when a reachable index is not valid JSON", async () => {
    const store = await newLayout();
    const layout = store.location;
    const broken = await addBlob(layout, '{"schemaVersion": 2, "manifests": [', MediaType.ociIndex);
    const garbage = await addBlob(layout, "garbage", MediaType.ociLayerGzip);
    await writeIndex(layout, [tagged(broken, "v1")]);
    const now = Date.now();
    await setAge(blobFile(layout, garbage.digest), now, 3 * defaultGraceMs);
    await assert.rejects(collectGarbage(store, { now }), (error: unknown) => isRociError(error));
    assert.ok(existsSync(blobFile(layout, garbage.digest)));
  });

  it("keeps a blob a writer just hard-linked in, before the index names it", {}, async () => {
    const store = await newLayout();
    const source = join(store.location, "..", "build-output");
    await writeFile(source, "built long ago");
    await chmod(source, 0o444);
    const old = new Date(Date.now() - 30 * 24 * hour);
    await utimes(source, old, old);
    const descriptor = {
      mediaType: MediaType.ociLayerGzip,
      digest: digestOf(Buffer.from("built long ago")),
      size: 14,
    };
    assert.equal(await store.pushFile(descriptor, source), "linked");
    // A concurrent `roci gc` runs now, before the writer tags its image.
    await collectGarbage(await LayoutStore.open(store.location));
    assert.ok(existsSync(store.blobPath(descriptor.digest)), "the fresh blob was collected");
  });
});

describe("gc on layouts made by the peer tools", () => {
  it("removes nothing reachable from skopeo's and umoci's layouts; skopeo and roci verify still read them", async () => {
    for (const name of ["tagged", "nested", "multi"] as const) {
      const layout = await copyFixture(name);
      const orphan = await addBlob(layout, `orphan of ${name}`, MediaType.ociLayerGzip);
      const before = (await snapshotTree(join(layout, "blobs"))).length;
      const report = await collectGarbage(await LayoutStore.open(layout), { graceMs: 0 });
      assert.deepEqual(digestsOf(report.removed), [orphan.digest], name);
      assert.equal((await snapshotTree(join(layout, "blobs"))).length, before - 1);
      const verify = await roci("verify", layout);
      assert.equal(verify.code, 0, `${name}: ${verify.stdout}${verify.stderr}`);
    }
    const { tagged: fixture } = (await fixtures()).layouts;
    const layout = await copyFixture("tagged");
    await collectGarbage(await LayoutStore.open(layout), { graceMs: 0 });
    // (skopeo does not look up Docker schema 2 entries of an OCI layout by tag, even in the fixture.)
    for (const tag of ["base", "app", "latest", "zstd"] as const) {
      const { stdout } = await execFileAsync("skopeo", ["inspect", "--raw", `oci:${layout}:${tag}`]);
      assert.equal(digestOf(Buffer.from(stdout)), fixture.refs[tag].digest, tag);
    }
  });

  it("untagging an image lets gc collect exactly its blobs that nothing else uses", async () => {
    const { tagged: fixture } = (await fixtures()).layouts;
    const layout = await copyFixture("tagged");
    const store = await LayoutStore.open(layout);
    await store.untag(parseEntryName("zstd"));
    const report = await collectGarbage(store, { graceMs: 0 });
    const zstd = fixture.images.zstd;
    const others = new Set(
      (["base", "app", "docker"] as const).flatMap((key) => {
        const image = fixture.images[key];
        return [image.manifest, image.config, ...image.layers].map((blob) => blob.digest);
      }),
    );
    // The untagged entry stays listed in index.json, so what it reaches stays too.
    for (const entry of fixture.untagged) {
      others.add(entry.digest);
      const manifest = JSON.parse(await readFile(blobFile(layout, entry.digest), "utf8")) as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      for (const blob of [manifest.config, ...manifest.layers]) others.add(blob.digest);
    }
    const expected = [zstd.manifest, zstd.config, ...zstd.layers]
      .map((blob) => blob.digest)
      .filter((digest) => !others.has(digest));
    assert.ok(expected.length > 0);
    assert.deepEqual(digestsOf(report.removed), sorted(expected));
    assert.ok((await readIndex(layout)).manifests.length === fixture.entries.length - 1);
  });

  it("roci gc --dry-run lists what roci gc then removes", async () => {
    const layout = await copyFixture("single");
    const orphan = await addBlob(layout, "orphan", MediaType.ociLayerGzip);
    const old = new Date(Date.now() - 2 * hour);
    await utimes(blobFile(layout, orphan.digest), old, old);
    const before = await snapshotTree(layout);
    const dry = await roci("--format", "json", "gc", "--dry-run", layout);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(diffSnapshots(before, await snapshotTree(layout)), []);
    const planned = JSON.parse(dry.stdout) as GcReport;
    assert.deepEqual(digestsOf(planned.removed), [orphan.digest]);
    const young = await roci("gc", "--grace", "3h", layout);
    assert.equal(young.code, 0, young.stderr);
    assert.ok(existsSync(blobFile(layout, orphan.digest)), "younger than 3h: kept");
    const run = await roci("gc", layout);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /removed 1 blobs/);
    assert.ok(!existsSync(blobFile(layout, orphan.digest)));
    assert.ok((await stat(layout)).isDirectory());
  });
});
