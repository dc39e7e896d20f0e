/**
 * Concurrent writers across processes (DESIGN.md "Write discipline"; ANCHORS.md §4.1: lost updates
 * of index.json in other tools). Real processes — the library in a child (`test-support/writer.ts`)
 * and the built CLI — write one layout at the same time while readers list it in a loop: no tag may
 * be lost, no reader may see a torn index.json, and nothing may be left behind. Every case runs with
 * both lock kinds: flock (the default) and `ROCI_LOCK=exclusive-file`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { copyFixture, type Fixtures, fixtures } from "../test-support/fixtures.ts";
import { type RunResult, runProgram, runRoci } from "../test-support/run.ts";
import { tempDir } from "../test-support/scratch.ts";
import { LayoutReader } from "./layout-reader.ts";
import { tempDirName } from "./layout-store.ts";
import { EXCLUSIVE_FILE, FLOCK_FILE, flockAvailable, type LayoutLock } from "./lock.ts";

type Kind = LayoutLock["kind"];
const kinds: readonly Kind[] = ["flock", "exclusive-file"];

const writerScript = fileURLToPath(new URL("../test-support/writer.js", import.meta.url));
const refName = "org.opencontainers.image.ref.name";

/** The environment a child needs to use `kind` (run.ts drops every inherited ROCI_* variable). */
function lockEnv(kind: Kind): Record<string, string> {
  return kind === "exclusive-file" ? { ROCI_LOCK: "exclusive-file" } : {};
}

function describeRun(what: string, result: RunResult): string {
  return `${what}: exit ${result.code}\nstdout: ${result.stdout.toString()}\nstderr: ${result.stderr}`;
}

/** Files a writer may leave only while it runs: blob temp files, index temp files, fallback locks. */
async function leftovers(layout: string): Promise<string[]> {
  return (await readdir(layout)).filter(
    (name) =>
      name === tempDirName ||
      /^index\.json\..*\.tmp$/.test(name) ||
      name === EXCLUSIVE_FILE ||
      name.startsWith(`${EXCLUSIVE_FILE}.stale-`),
  );
}

/** `roci verify LAYOUT` exits 0 with no error-level problem, and no writer left anything behind. */
async function assertClean(layout: string, kind: Kind): Promise<void> {
  const verify = await runRoci(["--format", "json", "verify", layout]);
  assert.equal(verify.code, 0, describeRun("roci verify", verify));
  const report = JSON.parse(verify.stdout.toString()) as { ok: boolean; problems: { severity: string }[] };
  assert.equal(report.ok, true);
  assert.deepEqual(
    report.problems.filter((problem) => problem.severity === "error"),
    [],
  );
  assert.deepEqual(await leftovers(layout), [], `temp or lock files left in ${layout}`);
  if (kind === "flock" && flockAvailable()) {
    // Proof that the flock kind really was used (and that roci never deletes the lock file).
    assert.ok((await readdir(layout)).includes(FLOCK_FILE), `${FLOCK_FILE} exists`);
  }
  if (kind === "exclusive-file") {
    assert.ok(!(await readdir(layout)).includes(FLOCK_FILE), `no ${FLOCK_FILE}: the fallback was used`);
  }
}

interface ReaderStats {
  reads: number;
  failures: string[];
}

/**
 * Runs `roci ls --format json LAYOUT` in a loop until `done` settles (at least once): every run must
 * exit 0 with a JSON array; names must never disappear between two reads of one reader (a lost update
 * shows up as a name that vanishes), and every name matching `expect` must name `digest`.
 */
async function readLoop(
  layout: string,
  done: Promise<unknown>,
  expect: { pattern: RegExp; digest: string },
): Promise<ReaderStats> {
  let finished = false;
  void done.finally(() => {
    finished = true;
  });
  const stats: ReaderStats = { reads: 0, failures: [] };
  let seen = new Set<string>();
  while (!finished || stats.reads === 0) {
    const result = await runRoci(["ls", "--format", "json", layout]);
    stats.reads++;
    if (result.code !== 0) {
      stats.failures.push(describeRun("roci ls", result));
      continue;
    }
    let entries: { names: string[]; digest: string }[];
    try {
      entries = JSON.parse(result.stdout.toString()) as { names: string[]; digest: string }[];
      assert.ok(Array.isArray(entries));
    } catch (error) {
      stats.failures.push(`roci ls printed something that is not a JSON array: ${String(error)}`);
      continue;
    }
    const now = new Set<string>();
    for (const entry of entries) {
      for (const name of entry.names) {
        now.add(name);
        if (expect.pattern.test(name) && entry.digest !== expect.digest) {
          stats.failures.push(`${name} names ${entry.digest}, expected ${expect.digest}`);
        }
      }
    }
    const vanished = [...seen].filter((name) => !now.has(name));
    if (vanished.length > 0) stats.failures.push(`names vanished between two reads: ${vanished.join(", ")}`);
    seen = now;
  }
  return stats;
}

/** Every name in `expected` names `digest` in the layout, and the layout's original tags are still there. */
async function assertTags(layout: string, expected: readonly string[], digest: string): Promise<void> {
  const reader = await LayoutReader.open(layout);
  const { manifests } = await reader.index();
  const byName = new Map<string, string[]>();
  for (const entry of manifests) {
    const name = entry.annotations?.[refName];
    if (name !== undefined) byName.set(name, [...(byName.get(name) ?? []), entry.digest]);
  }
  const missing = expected.filter((name) => !byName.has(name));
  assert.deepEqual(missing, [], `${missing.length} of ${expected.length} tags lost`);
  for (const name of expected) assert.deepEqual(byName.get(name), [digest], `tag ${name}`);
}

const startDelayMs = 1200;

/** Four different images from the fixtures, each with the tag it gets in the destination. */
function copySources(fx: Fixtures["layouts"]): { src: string; tag: string; digest: string }[] {
  return [
    { src: `${fx.single.path}:v1`, tag: "single", digest: fx.single.refs.v1.digest },
    { src: `${fx.tagged.path}:base`, tag: "base", digest: fx.tagged.refs.base.digest },
    { src: `${fx.tagged.path}:app`, tag: "app", digest: fx.tagged.refs.app.digest },
    { src: `${fx.multi.path}:multi`, tag: "multi", digest: fx.multi.refs.multi.digest },
  ];
}

/** `<prefix>-<writer>-<n>` for every writer and n. */
function namesFor(prefix: string, writers: number, perWriter: number): string[] {
  return Array.from({ length: writers * perWriter }, (_, i) => {
    return `${prefix}-${Math.floor(i / perWriter)}-${i % perWriter}`;
  });
}

describe("concurrent writers across processes", { timeout: 120_000 }, () => {
  for (const kind of kinds) {
    describe(`lock kind ${kind}`, () => {
      it("8 library writers × 25 tags each, 2 readers listing in a loop: all 200 tags, no torn read", async () => {
        const { single } = (await fixtures()).layouts;
        const layout = await copyFixture("single");
        const digest = single.refs.v1.digest;
        const writers = 8;
        const perWriter = 25;
        const startAt = Date.now() + startDelayMs;
        const writing = Promise.all(
          Array.from({ length: writers }, (_, p) =>
            runProgram(
              process.execPath,
              [writerScript, "tag", layout, "v1", `t-${p}`, String(perWriter), String(startAt)],
              { env: lockEnv(kind), timeoutMs: 90_000 },
            ),
          ),
        );
        const expect = { pattern: /^t-/, digest };
        const readers = await Promise.all([
          readLoop(layout, writing, expect),
          readLoop(layout, writing, expect),
        ]);
        for (const [p, result] of (await writing).entries()) {
          assert.equal(result.code, 0, describeRun(`writer ${p}`, result));
          assert.equal(result.stdout.toString(), "done\n");
        }
        for (const stats of readers) {
          assert.deepEqual(stats.failures, []);
          assert.ok(stats.reads > 0);
        }
        const expected = namesFor("t", writers, perWriter);
        await assertTags(layout, [...expected, "v1"], digest);
        const reader = await LayoutReader.open(layout);
        assert.equal((await reader.index()).manifests.length, expected.length + 1, "one entry per name");
        await assertClean(layout, kind);
      });

      it("8 `roci tag` CLI processes, 3 invocations each, while a reader lists: no tag lost", async () => {
        const { single } = (await fixtures()).layouts;
        const layout = await copyFixture("single");
        const digest = single.refs.v1.digest;
        const writers = 8;
        const perWriter = 3;
        const failures: string[] = [];
        const writing = Promise.all(
          Array.from({ length: writers }, async (_, p) => {
            for (let n = 0; n < perWriter; n++) {
              const result = await runRoci(["tag", `${layout}:v1`, `c-${p}-${n}`], {
                env: lockEnv(kind),
                timeoutMs: 60_000,
              });
              if (result.code !== 0) failures.push(describeRun(`roci tag c-${p}-${n}`, result));
            }
          }),
        );
        const stats = await readLoop(layout, writing, { pattern: /^c-/, digest });
        await writing;
        assert.deepEqual(failures, []);
        assert.deepEqual(stats.failures, []);
        const expected = namesFor("c", writers, perWriter);
        await assertTags(layout, [...expected, "v1"], digest);
        const tags = await runRoci(["--format", "json", "tags", layout]);
        assert.equal(tags.code, 0, describeRun("roci tags", tags));
        assert.deepEqual((JSON.parse(tags.stdout.toString()) as string[]).sort(), [...expected, "v1"].sort());
        await assertClean(layout, kind);
      });

      it("4 concurrent `roci copy` of different images into one layout lose no tag", async () => {
        const fx = (await fixtures()).layouts;
        const layout = join(await tempDir(), "dst");
        const init = await runRoci(["init", layout]);
        assert.equal(init.code, 0, describeRun("roci init", init));
        const sources = copySources(fx);
        const copy = (src: string, tag: string) =>
          runRoci(["copy", src, `${layout}:${tag}`], { env: lockEnv(kind), timeoutMs: 60_000 });
        const results = await Promise.all(sources.map(({ src, tag }) => copy(src, tag)));
        for (const [i, result] of results.entries()) {
          const { src } = sources[i]!;
          assert.equal(result.code, 0, describeRun(`roci copy ${src}`, result));
        }
        for (const { tag, digest } of sources) await assertTags(layout, [tag], digest);
        const reader = await LayoutReader.open(layout);
        assert.equal((await reader.index()).manifests.length, sources.length);
        await assertClean(layout, kind);
      });

      it("6 processes pushing the same 8 MiB blob at once leave one valid blob", async () => {
        const layout = join(await tempDir(), "same");
        const init = await runRoci(["init", layout]);
        assert.equal(init.code, 0, describeRun("roci init", init));
        const size = 8 * 1024 * 1024 + 123;
        const startAt = Date.now() + startDelayMs;
        const results = await Promise.all(
          Array.from({ length: 6 }, () =>
            runProgram(
              process.execPath,
              [writerScript, "push", layout, "4242", String(size), "1", String(startAt)],
              { env: lockEnv(kind), timeoutMs: 60_000 },
            ),
          ),
        );
        const digests = new Set<string>();
        for (const [p, result] of results.entries()) {
          assert.equal(result.code, 0, describeRun(`pusher ${p}`, result));
          const [outcome, digest] = result.stdout.toString().trim().split(" ");
          assert.ok(outcome === "copied" || outcome === "exists", `outcome ${outcome}`);
          digests.add(digest!);
        }
        assert.equal(digests.size, 1, "every process pushed the same digest");
        const [digest] = [...digests];
        const names = await readdir(join(layout, "blobs", "sha256"));
        assert.deepEqual(names, [digest!.slice("sha256:".length)], "one blob, under its digest");
        const bytes = await readFile(join(layout, "blobs", "sha256", names[0]!));
        assert.equal(bytes.length, size);
        assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, digest);
        assert.deepEqual(await leftovers(layout), []);
      });
    });
  }

  it("6 processes pushing 30 different small blobs each, all at once, all succeed", {}, async () => {
    // The race needs a push's mkdir to meet another's rmdir: a few trials, stopping at the first failure.
    for (let trial = 0; trial < 3; trial++) {
      const layout = join(await tempDir(), "many");
      const init = await runRoci(["init", layout]);
      assert.equal(init.code, 0, describeRun("roci init", init));
      const startAt = Date.now() + startDelayMs;
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, p) =>
          runProgram(
            process.execPath,
            [writerScript, "push", layout, String(1000 * (p + 1)), "4096", "30", String(startAt)],
            { timeoutMs: 60_000 },
          ),
        ),
      );
      for (const [p, result] of results.entries()) {
        assert.equal(result.code, 0, describeRun(`trial ${trial}: pusher ${p}`, result));
      }
      assert.equal((await readdir(join(layout, "blobs", "sha256"))).length, 6 * 30);
      assert.deepEqual(await leftovers(layout), []);
    }
  });

  it("8 concurrent `roci copy` into a destination that does not exist yet all succeed and lose no tag", {}, async () => {
    // Each of the four images under two names: eight processes racing to create the layout.
    const sources = copySources((await fixtures()).layouts).flatMap((source) => [
      { ...source, tag: `${source.tag}-a` },
      { ...source, tag: `${source.tag}-b` },
    ]);
    // The race needs the processes to reach the missing directory together: a few trials.
    for (let trial = 0; trial < 3; trial++) {
      const layout = join(await tempDir(), "fresh");
      const results = await Promise.all(
        sources.map(({ src, tag }) => runRoci(["copy", src, `${layout}:${tag}`], { timeoutMs: 60_000 })),
      );
      for (const [i, result] of results.entries()) {
        assert.equal(result.code, 0, describeRun(`trial ${trial}: roci copy ${sources[i]!.src}`, result));
      }
      for (const { tag, digest } of sources) await assertTags(layout, [tag], digest);
    }
  });
});
