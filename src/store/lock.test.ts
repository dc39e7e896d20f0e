import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { isRociError, type RociError } from "../errors.ts";
import { withReadOnlyBindMount } from "../test-support/readonly.ts";
import { EXCLUSIVE_FILE, FLOCK_FILE, flockAvailable, type LayoutLock, lockIndex } from "./lock.ts";

type Kind = LayoutLock["kind"];
const kinds: readonly Kind[] = ["flock", "exclusive-file"];

const holderScript = fileURLToPath(new URL("../test-support/lock-holder.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
const hasFlockTool = spawnSync("flock", ["--version"]).status === 0;

/** The environment for a child using `kind`: the test runner's context and any ROCI_LOCK dropped. */
function childEnv(kind: Kind): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  delete env.ROCI_LOCK;
  if (kind === "exclusive-file") env.ROCI_LOCK = "exclusive-file";
  return env;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when it exited. */
  at: number;
}

/** A child process whose stdout can be awaited for a marker. */
class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout = "";
  stderr = "";
  #exit: Exit | undefined;

  constructor(file: string, args: readonly string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(file, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
    });
    this.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve, reject) => {
      this.child.once("error", reject);
      this.child.once("close", (code, signal) => {
        this.#exit = { code, signal, at: performance.now() };
        resolve(this.#exit);
      });
    });
    live.add(this);
    void this.exited.finally(() => live.delete(this));
  }

  get pid(): number {
    assert.ok(this.child.pid !== undefined);
    return this.child.pid;
  }

  /** Resolves once stdout contains `marker`; rejects if the process ends first or after `ms`. */
  async waitFor(marker: string, ms = 8000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!this.stdout.includes(marker)) {
      if (this.#exit !== undefined || performance.now() > deadline) {
        throw new Error(
          `${this.child.spawnargs.join(" ")}: no "${marker}" (exit ${this.#exit?.code ?? "-"}, stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)})`,
        );
      }
      await sleep(5);
    }
  }

  async kill(): Promise<Exit> {
    if (this.#exit === undefined) this.child.kill("SIGKILL");
    return this.exited;
  }
}

const live = new Set<Proc>();

function holder(kind: Kind, layout: string, ms: number): Proc {
  return new Proc(process.execPath, [holderScript, "hold", layout, String(ms)], childEnv(kind));
}

/** `flock(1)` holding an exclusive lock on `path` for `seconds`, as buildkit's gofrs/flock would. */
function flockTool(path: string, seconds: number): Proc {
  return new Proc("flock", ["-x", path, "-c", `echo locked; sleep ${seconds}`], childEnv("flock"));
}

/** Whether `flock(1)` could take the lock on `path` right now (non-blocking). */
function flockToolCanLock(path: string): boolean {
  const result = spawnSync("flock", ["-n", "-x", path, "true"]);
  return result.status === 0;
}

function isLocked(error: unknown, ...fragments: string[]): boolean {
  assert.ok(isRociError(error, "LOCKED"), `expected LOCKED, got ${String(error)}`);
  assert.equal(error.exitCode, 6);
  for (const f of fragments)
    assert.ok(error.message.includes(f), `${JSON.stringify(error.message)} lacks ${f}`);
  return true;
}

let root: string;
let serial = 0;
async function freshLayout(): Promise<string> {
  const dir = join(root, `layout-${++serial}`);
  await mkdir(dir);
  return dir;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "roci-lock-test-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all([...live].map((p) => p.kill()));
});

it("the flock addon is built (npm ci builds it) and loads", () => {
  assert.equal(flockAvailable(), true);
});

it("falls back to O_EXCL lock files, and says so, when the addon is not built", async () => {
  // A copy of the compiled module with no build/ beside it: the addon cannot load.
  const pkg = join(root, "no-addon");
  await mkdir(join(pkg, "dist", "store"), { recursive: true });
  await writeFile(join(pkg, "package.json"), '{"type":"module"}\n');
  await copyFile(fileURLToPath(new URL("./lock.js", import.meta.url)), join(pkg, "dist", "store", "lock.js"));
  await copyFile(fileURLToPath(new URL("../errors.js", import.meta.url)), join(pkg, "dist", "errors.js"));
  await mkdir(join(pkg, "dist", "native"));
  await copyFile(
    fileURLToPath(new URL("../native/addon.js", import.meta.url)),
    join(pkg, "dist", "native", "addon.js"),
  );
  const layout = await freshLayout();
  const script = `
    const { flockAvailable, lockIndex } = await import(${JSON.stringify(join(pkg, "dist", "store", "lock.js"))});
    const messages = [];
    const lock = await lockIndex(${JSON.stringify(layout)}, { onDebug: (m) => messages.push(m) });
    console.log(JSON.stringify({ available: flockAvailable(), kind: lock.kind, messages }));
    await lock.release();`;
  const p = new Proc(process.execPath, ["--input-type=module", "-e", script], childEnv("flock"));
  const exit = await p.exited;
  assert.equal(exit.code, 0, p.stderr);
  const out = JSON.parse(p.stdout) as { available: boolean; kind: string; messages: string[] };
  assert.equal(out.available, false);
  assert.equal(out.kind, "exclusive-file");
  assert.match(
    out.messages[0] ?? "",
    /^using O_EXCL lock files: flock addon not available \(.*roci_flock\.node was not built\)/,
  );
});

for (const kind of kinds) {
  describe(`lockIndex (${kind})`, () => {
    const saved = process.env.ROCI_LOCK;
    before(() => {
      if (kind === "exclusive-file") process.env.ROCI_LOCK = "exclusive-file";
      else delete process.env.ROCI_LOCK;
    });
    after(() => {
      if (saved === undefined) delete process.env.ROCI_LOCK;
      else process.env.ROCI_LOCK = saved;
    });

    it("takes and releases the lock, saying which kind it uses", async () => {
      const layout = await freshLayout();
      const messages: string[] = [];
      const lock = await lockIndex(layout, { onDebug: (m) => messages.push(m) });
      assert.equal(lock.kind, kind);
      assert.match(
        messages[0] ?? "",
        kind === "flock" ? /^using flock on / : /^using O_EXCL lock files: ROCI_LOCK=exclusive-file/,
      );
      await lock.release();
      await lock.release(); // idempotent
      if (kind === "flock") {
        // Kept on release: deleting it would reopen the unlink race (see lock.ts).
        assert.equal((await stat(join(layout, FLOCK_FILE))).mode & 0o777, 0o644);
        if (hasFlockTool) assert.ok(flockToolCanLock(join(layout, FLOCK_FILE)));
      } else {
        await assert.rejects(stat(join(layout, EXCLUSIVE_FILE)), { code: "ENOENT" });
      }
      const again = await lockIndex(layout, { timeoutMs: 0 });
      await again.release();
    });

    it("excludes other processes: 8 processes × 25 read-modify-writes end at 200", {
      timeout: 15_000,
    }, async () => {
      const layout = await freshLayout();
      const counter = join(layout, "counter");
      const procs = Array.from(
        { length: 8 },
        () => new Proc(process.execPath, [holderScript, "count", layout, counter, "25"], childEnv(kind)),
      );
      for (const p of procs) {
        const exit = await p.exited;
        assert.equal(exit.code, 0, p.stderr);
      }
      assert.equal(await readFile(counter, "utf8"), "200\n");
    });

    it("waits for a holder in the same process without blocking the event loop", async () => {
      const layout = await freshLayout();
      const first = await lockIndex(layout);
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      let settled = false;
      const second = lockIndex(layout, { timeoutMs: 5000 }).finally(() => {
        settled = true;
      });
      await sleep(200);
      clearInterval(ticker);
      assert.equal(settled, false);
      assert.ok(ticks >= 10, `only ${ticks} timer ticks while waiting`);
      await first.release();
      const lock = await second;
      assert.equal(lock.kind, kind);
      await lock.release();
    });

    it("is free again after its holder is SIGKILLed", async () => {
      const layout = await freshLayout();
      const p = holder(kind, layout, -1);
      await p.waitFor(`locked ${kind}`);
      await p.kill();
      const messages: string[] = [];
      if (kind === "flock") {
        // The kernel dropped it with the process: no wait at all.
        const lock = await lockIndex(layout, { timeoutMs: 0 });
        await lock.release();
      } else {
        const lock = await lockIndex(layout, { timeoutMs: 2000, onDebug: (m) => messages.push(m) });
        await lock.release();
        assert.ok(
          messages.some(
            (m) => m.startsWith("removing stale lock") && m.includes(`pid ${p.pid} on this host is gone`),
          ),
          messages.join("\n"),
        );
      }
    });

    it("times out with LOCKED naming the holder", async () => {
      const layout = await freshLayout();
      const p = holder(kind, layout, -1);
      await p.waitFor("locked");
      const start = performance.now();
      const fragments =
        kind === "flock"
          ? ["another process", `pid ${p.pid}`, "flock on index.json.lock", layout]
          : [`pid ${p.pid} on this host`, EXCLUSIVE_FILE, layout];
      await assert.rejects(lockIndex(layout, { timeoutMs: 300 }), (error) => isLocked(error, ...fragments));
      const elapsed = performance.now() - start;
      assert.ok(elapsed >= 290 && elapsed < 3000, `waited ${elapsed} ms`);
      await p.kill();
    });

    if (kind === "flock") {
      it("follows a lock file that is unlinked and recreated while waiting (as buildkit does)", {
        skip: !hasFlockTool && "flock(1) is not installed",
      }, async () => {
        const layout = await freshLayout();
        const path = join(layout, FLOCK_FILE);
        const a = holder(kind, layout, -1);
        await a.waitFor("locked");
        const messages: string[] = [];
        let waiting!: () => void;
        const isWaiting = new Promise<void>((resolve) => {
          waiting = resolve;
        });
        const b = lockIndex(layout, {
          timeoutMs: 8000,
          onDebug: (m) => {
            messages.push(m);
            if (m.includes("waiting")) waiting();
          },
        }).then((lock) => ({ lock, at: performance.now() }));
        await isWaiting; // b holds a descriptor of the old file
        // buildkit's writer: remove the lock file, a new writer creates and locks a new one.
        await unlink(path);
        const c = flockTool(path, 0.7);
        await c.waitFor("locked");
        await a.kill(); // frees the old, unlinked inode: b gets it, and must notice it is stale
        const [{ lock, at }, cExit] = await Promise.all([b, c.exited]);
        assert.ok(at >= cExit.at, "took the lock while flock(1) still held the current file");
        assert.ok(
          messages.some((m) => m.includes("removed or replaced")),
          messages.join("\n"),
        );
        assert.equal(flockToolCanLock(path), false, "the lock is not on the file at the path");
        await lock.release();
        assert.equal(flockToolCanLock(path), true);
      });

      it("interoperates with flock(1): waits while it holds index.json.lock, and excludes it", {
        skip: !hasFlockTool && "flock(1) is not installed",
      }, async () => {
        const layout = await freshLayout();
        const path = join(layout, FLOCK_FILE);
        const tool = flockTool(path, 0.8);
        await tool.waitFor("locked");
        const lock = await lockIndex(layout, { timeoutMs: 5000 });
        const toolExit = await tool.exited;
        assert.ok(performance.now() >= toolExit.at);
        assert.equal(toolExit.code, 0);
        assert.equal(flockToolCanLock(path), false);
        await lock.release();
        assert.equal(flockToolCanLock(path), true);
      });
    } else {
      it("leaves a lock file that replaced its own on release", async () => {
        const layout = await freshLayout();
        const path = join(layout, EXCLUSIVE_FILE);
        const messages: string[] = [];
        const lock = await lockIndex(layout, { onDebug: (m) => messages.push(m) });
        await unlink(path); // someone judged ours stale and removed it...
        const p = holder(kind, layout, -1); // ...and another process took the lock
        await p.waitFor("locked");
        await lock.release();
        assert.ok(
          messages.some((m) => m.includes("is no longer ours")),
          messages.join("\n"),
        );
        assert.equal(JSON.parse(await readFile(path, "utf8")).pid, p.pid);
        await assert.rejects(lockIndex(layout, { timeoutMs: 50 }), (error) =>
          isLocked(error, `pid ${p.pid}`),
        );
        await p.kill();
      });

      it("keeps another host's lock until it is 10 minutes stale", async () => {
        const layout = await freshLayout();
        const path = join(layout, EXCLUSIVE_FILE);
        const owner = {
          pid: 1,
          hostname: "elsewhere.example",
          created: new Date().toISOString(),
          token: "x",
        };
        await writeFile(path, JSON.stringify(owner));
        await assert.rejects(lockIndex(layout, { timeoutMs: 100 }), (error) => {
          isLocked(error, "pid 1 on host elsewhere.example");
          assert.ok((error as RociError).hint?.includes(path));
          return true;
        });
        const old = new Date(Date.now() - 11 * 60_000);
        await utimes(path, old, old);
        const messages: string[] = [];
        const lock = await lockIndex(layout, { timeoutMs: 100, onDebug: (m) => messages.push(m) });
        assert.ok(
          messages.some((m) => m.startsWith("removing stale lock") && m.includes("has not refreshed it")),
          messages.join("\n"),
        );
        await lock.release();
      });

      it("treats an unreadable lock file as live until it is old", async () => {
        const layout = await freshLayout();
        const path = join(layout, EXCLUSIVE_FILE);
        await writeFile(path, "");
        await assert.rejects(lockIndex(layout, { timeoutMs: 100 }), (error) =>
          isLocked(error, "an unknown holder"),
        );
        const old = new Date(Date.now() - 11 * 60_000);
        await utimes(path, old, old);
        const lock = await lockIndex(layout, { timeoutMs: 100 });
        await lock.release();
      });
    }

    it("stops waiting when its signal aborts", async () => {
      const layout = await freshLayout();
      const first = await lockIndex(layout);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      await assert.rejects(lockIndex(layout, { signal: controller.signal }), (error) =>
        isRociError(error, "INTERRUPTED"),
      );
      await first.release();
    });

    it("reports a missing layout directory as NOT_FOUND", async () => {
      const missing = join(root, "no-such-layout");
      await assert.rejects(lockIndex(missing), (error) => isRociError(error, "NOT_FOUND"));
    });

    it("reports a read-only layout as READ_ONLY and leaves it untouched", {
      skip: !isRoot && "needs root",
    }, async () => {
      const layout = await freshLayout();
      await writeFile(join(layout, "index.json"), "{}\n");
      for (const existingLockFile of [false, true]) {
        // A lock file left behind (by buildkit or roci) must not make a read-only layout look writable.
        if (existingLockFile) await writeFile(join(layout, FLOCK_FILE), "");
        await withReadOnlyBindMount(layout, async (mounted) => {
          await assert.rejects(lockIndex(mounted, { timeoutMs: 0 }), (error) => {
            assert.ok(isRociError(error, "READ_ONLY"), String(error));
            assert.ok(error.message.includes(mounted) && error.message.includes("EROFS"), error.message);
            return true;
          });
        });
      }
      assert.deepEqual((await readdir(layout)).sort(), ["index.json", FLOCK_FILE]);
    });
  });
}
