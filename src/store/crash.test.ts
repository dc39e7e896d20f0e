/**
 * Writers killed with SIGKILL at random points (DESIGN.md "Write discipline": a crash never leaves
 * a partial file under its real name, nor a stale lock). A child (`test-support/writer.ts crash`)
 * pushes random images — some layers 5–20 MiB, so kills land mid-write — and tags them, until the
 * test kills it 5–300 ms after it is ready. After every kill: index.json parses, verify finds
 * nothing corrupt, invalid or missing, every file under blobs/ hashes to its name, and a fresh
 * writer gets the lock (the dead process's lock does not hold it up). At the end `roci gc --grace 0`
 * removes what the dead writers left. Both lock kinds: flock and `ROCI_LOCK=exclusive-file`.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomInt } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { verifyLayout } from "../image/verify.ts";
import type { Descriptor } from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import { type RunResult, runRoci } from "../test-support/run.ts";
import { tempDir } from "../test-support/scratch.ts";
import { LayoutReader } from "./layout-reader.ts";
import { LayoutStore, tempDirName } from "./layout-store.ts";
import { EXCLUSIVE_FILE, type LayoutLock } from "./lock.ts";
import { parseEntryName } from "./naming.ts";

type Kind = LayoutLock["kind"];
const kinds: readonly Kind[] = ["flock", "exclusive-file"];

const writerScript = fileURLToPath(new URL("../test-support/writer.js", import.meta.url));

/** Per lock kind: stop after this many kills, or once this much time has passed. */
const maxKills = 40;
const budgetMs = 12_000;

function lockEnv(kind: Kind): Record<string, string> {
  return kind === "exclusive-file" ? { ROCI_LOCK: "exclusive-file" } : {};
}

/** The inherited environment without the test runner's context or any ROCI_*, plus `kind`'s. */
function childEnv(kind: Kind): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("ROCI_") || key === "NODE_TEST_CONTEXT") continue;
    env[key] = value;
  }
  return { ...env, ...lockEnv(kind) };
}

/** Runs `fn` with this process's own lock kind set to `kind` (lockIndex reads ROCI_LOCK at each call). */
async function withLockKind<T>(kind: Kind, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.ROCI_LOCK;
  if (kind === "exclusive-file") process.env.ROCI_LOCK = "exclusive-file";
  else delete process.env.ROCI_LOCK;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.ROCI_LOCK;
    else process.env.ROCI_LOCK = saved;
  }
}

function describeRun(what: string, result: RunResult): string {
  return `${what}: exit ${result.code}\nstdout: ${result.stdout.toString()}\nstderr: ${result.stderr}`;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A crash writer, started and ready (its store is open; it is about to write). */
async function startCrashWriter(
  layout: string,
  kind: Kind,
): Promise<{ child: ChildProcess; exited: Promise<Exit>; stderr: () => string }> {
  const child = spawn(process.execPath, [writerScript, "crash", layout, "crash"], {
    env: childEnv(kind),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (stdout.includes("ready\n")) resolve();
    });
    void exited.then((exit) => {
      reject(new Error(`crash writer exited before it was ready: ${JSON.stringify(exit)}\n${stderr}`));
    });
  });
  return { child, exited, stderr: () => stderr };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

/**
 * Every file under blobs/sha256 hashes to its name. A blob file never changes once named (a
 * replacement is a rename, so a new inode), so files already checked are skipped by inode and size.
 */
async function assertBlobsMatchNames(layout: string, checked: Set<string>): Promise<void> {
  const dir = join(layout, "blobs", "sha256");
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const info = await stat(path);
    const key = `${name}:${info.ino}:${info.size}`;
    if (checked.has(key)) continue;
    assert.ok(/^[0-9a-f]{64}$/.test(name), `blobs/sha256/${name} is not named by a digest`);
    assert.equal(await sha256File(path), name, `blobs/sha256/${name} does not hash to its name`);
    checked.add(key);
  }
  assert.deepEqual(await readdir(join(layout, "blobs")), ["sha256"], "blobs/ holds only sha256/");
}

/** What a crash must never cause; unreferenced blobs and leftover temp files (warnings) are fine. */
const forbiddenProblems = new Set(["missing", "corrupt", "invalid", "unverifiable", "stray"]);

/** index.json parses and verify finds nothing corrupt, invalid or missing (unreferenced blobs are fine). */
async function assertIndexAndVerify(layout: string): Promise<void> {
  const reader = await LayoutReader.open(layout);
  const { manifests } = await reader.index();
  const report = await verifyLayout(reader, manifests, { reportUnreferenced: true });
  const bad = report.problems.filter(
    (problem) => forbiddenProblems.has(problem.kind) || problem.severity === "error",
  );
  assert.deepEqual(bad, [], "verify after a kill");
  assert.equal(report.ok, true);
}

/** Leftovers a dead writer may leave: blob temp files, index.json temp files, an exclusive-file lock. */
async function leftovers(layout: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir(layout)) {
    if (name === tempDirName) {
      for (const temp of await readdir(join(layout, name))) found.push(`${name}/${temp}`);
      found.push(name);
    } else if (/^index\.json\..*\.tmp$/.test(name) || name.startsWith(EXCLUSIVE_FILE)) {
      found.push(name);
    }
  }
  return found;
}

/** Whether the exclusive-file lock exists with no readable owner record (empty or cut short). */
async function isOwnerlessLock(layout: string): Promise<boolean> {
  let raw: string;
  try {
    raw = await readFile(join(layout, EXCLUSIVE_FILE), "utf8");
  } catch {
    return false;
  }
  try {
    const owner = JSON.parse(raw) as { pid?: unknown };
    return typeof owner.pid !== "number";
  } catch {
    return true;
  }
}

/** A tiny image, pushed and tagged in-process, for the fresh writer to re-tag after every kill. */
async function pushBaseImage(store: LayoutStore): Promise<Descriptor> {
  const push = async (bytes: Buffer, mediaType: string): Promise<Descriptor> => {
    const descriptor: Descriptor = {
      mediaType,
      digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}` as Descriptor["digest"],
      size: bytes.length,
    };
    await store.push(descriptor, Readable.from([bytes]));
    return descriptor;
  };
  const layer = await push(Buffer.from("base layer"), MediaType.ociLayer);
  const config = await push(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: [layer.digest] },
      }),
    ),
    MediaType.ociConfig,
  );
  const manifest = await push(
    Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }),
    ),
    MediaType.ociManifest,
  );
  await store.tag(manifest, [parseEntryName("base")]);
  return manifest;
}

describe("writers killed with SIGKILL at random points", { timeout: 120_000 }, () => {
  for (const kind of kinds) {
    it(`lock kind ${kind}: after every kill the layout is consistent and the next writer gets the lock`, async (t) => {
      const layout = join(await tempDir(), "layout");
      const base = await withLockKind(kind, async () => pushBaseImage(await LayoutStore.init(layout)));
      const checked = new Set<string>();
      const deadline = performance.now() + budgetMs;
      let kills = 0;
      let killedMidWrite = 0;
      let killedHoldingLock = 0;
      const seenLeftovers = new Set<string>();
      while (kills < maxKills && performance.now() < deadline) {
        const writer = await startCrashWriter(layout, kind);
        await sleep(randomInt(5, 301));
        writer.child.kill("SIGKILL");
        // Wait until it is reaped: a zombie still "exists" for kill(pid, 0), the exclusive-file staleness test.
        const exit = await writer.exited;
        assert.equal(
          exit.signal,
          "SIGKILL",
          `the writer died on its own: ${JSON.stringify(exit)}\n${writer.stderr()}`,
        );
        kills++;

        const left = await leftovers(layout);
        const fresh = left.filter((name) => !seenLeftovers.has(name));
        for (const name of left) seenLeftovers.add(name);
        if (fresh.some((name) => name.startsWith(`${tempDirName}/`) || name.startsWith("index.json."))) {
          killedMidWrite++;
        }
        if (left.includes(EXCLUSIVE_FILE)) {
          killedHoldingLock++;
          seenLeftovers.delete(EXCLUSIVE_FILE);
          // The lock is linked into place with its owner written: never ownerless.
          assert.equal(
            await isOwnerlessLock(layout),
            false,
            "a killed writer never leaves an ownerless lock",
          );
        }

        await assertIndexAndVerify(layout);
        await assertBlobsMatchNames(layout, checked);
        // The next writer: default lock timeout; it must complete (a dead holder does not keep the lock).
        await withLockKind(kind, async () => {
          const store = await LayoutStore.open(layout);
          await store.tag(base, [parseEntryName("alive")]);
        });
        const reader = await LayoutReader.open(layout);
        assert.equal((await reader.resolve({ tag: "alive" })).digest, base.digest);
      }
      t.diagnostic(
        `${kills} kills; ${killedMidWrite} left new temp files (killed mid-write), ${killedHoldingLock} left ` +
          `${EXCLUSIVE_FILE}`,
      );
      assert.ok(kills >= 3, `only ${kills} kills in ${budgetMs} ms`);

      const gc = await runRoci(["--format", "json", "gc", "--grace", "0", layout], { env: lockEnv(kind) });
      assert.equal(gc.code, 0, describeRun("roci gc --grace 0", gc));
      const verify = await runRoci(["--format", "json", "verify", layout]);
      assert.equal(verify.code, 0, describeRun("roci verify", verify));
      const report = JSON.parse(verify.stdout.toString()) as { problems: unknown[] };
      assert.deepEqual(report.problems, [], "after gc: nothing unreferenced, nothing wrong");
      assert.deepEqual(await leftovers(layout), [], "after gc: no temp files, no lock file");
      await assertBlobsMatchNames(layout, new Set()); // every remaining blob, hashed again
      const reader = await LayoutReader.open(layout);
      assert.equal((await reader.resolve({ tag: "base" })).digest, base.digest);
    });
  }

  it("exclusive-file: a lock file left empty by a writer killed between creating it and writing its owner does not block the next writer", async () => {
    const layout = join(await tempDir(), "empty-lock");
    const base = await withLockKind("exclusive-file", async () =>
      pushBaseImage(await LayoutStore.init(layout)),
    );
    // The state such a crash leaves: the O_EXCL-created file, still empty.
    await writeFile(join(layout, EXCLUSIVE_FILE), "", { flag: "wx" });
    await withLockKind("exclusive-file", async () => {
      const store = await LayoutStore.open(layout, { lockTimeoutMs: 1000 });
      await store.tag(base, [parseEntryName("after-crash")]);
    });
  });
});
