/**
 * Exclusive locking of a layout's `index.json`, for writers only: readers never call this, so a
 * read never creates a lock file (and works on read-only layouts).
 *
 * Two kinds:
 *
 * - `flock` (the normal case): `flock(LOCK_EX|LOCK_NB)` on `<layout>/index.json.lock`, the file and
 *   lock kind buildkit (`client/ociindex`, gofrs/flock) and `flock(1)` use, so roci, buildx and shell
 *   scripts exclude each other. Node has no flock, so it comes from our own tiny Node-API addon
 *   (`native/flock.c`, built by `npm install` into `build/Release/roci_flock.node`). The kernel drops
 *   a flock when its holder dies, so a crash never leaves a stale lock.
 *
 *   Interplay with buildkit: buildkit deletes `index.json.lock` after every use. A flock taken on a
 *   file that has since been unlinked (and perhaps recreated and locked by someone else) protects
 *   nothing, so after acquiring, the locked descriptor's dev/ino is compared with the file now at
 *   the path; if they differ, the descriptor is closed and the new file is locked instead. roci
 *   itself never deletes the lock file on release: deleting it is what opens that race (a waiter
 *   holding the old inode and a newcomer creating a new one would both "hold" the lock). buildkit
 *   opens the file with O_CREATE, so it is happy to find one left behind.
 *
 * - `exclusive-file` (when the addon could not be built or loaded, or `ROCI_LOCK=exclusive-file`):
 *   an O_EXCL create of `<layout>/.roci-lock` holding `{pid, hostname, created, token}`, removed on
 *   release and refreshed (mtime) by its holder every minute. A lock whose pid is gone on this host,
 *   or whose mtime is older than 10 minutes (a foreign or unreadable owner that stopped refreshing
 *   it), is stale and is recovered. It excludes other roci processes only: buildkit does not know it,
 *   and a roci process using flock does not see it.
 *
 * Waiting never blocks the event loop: the non-blocking attempt is retried with jittered backoff
 * (5 ms doubling to 200 ms) until the timeout.
 */
import { randomBytes } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { constants as fsConstants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { link, lstat, open, readFile, rename, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { hostname, constants as osConstants } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { getSystemErrorName } from "node:util";
import { errnoOf, fromFsError, RociError } from "../errors.ts";
import { loadAddon } from "../native/addon.ts";

/** A held lock on a layout's `index.json`. */
export interface LayoutLock {
  /** `flock`: a kernel flock on `index.json.lock`; `exclusive-file`: the O_EXCL `.roci-lock` fallback. */
  readonly kind: "flock" | "exclusive-file";
  /** Releases the lock. Idempotent. Never deletes `index.json.lock`. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** How long to wait for another holder, in milliseconds (default 30 000; 0 tries once). */
  timeoutMs?: number;
  /** Told which kind of lock is used, when waiting starts, and about stale or replaced lock files. */
  onDebug?: (message: string) => void;
  /** Aborting stops the wait with an `INTERRUPTED` error. */
  signal?: AbortSignal;
}

/** The file buildkit and roci flock. */
export const FLOCK_FILE = "index.json.lock";
/** The fallback's O_EXCL lock file. */
export const EXCLUSIVE_FILE = ".roci-lock";

const defaultTimeoutMs = 30_000;
const minBackoffMs = 5;
const maxBackoffMs = 200;
/** An exclusive-file lock not refreshed for this long is stale. */
const staleMs = 10 * 60_000;
/** An empty exclusive-file lock (a creator killed mid-create) is stale after this long. */
const emptyLockGraceMs = 250;
/** How often a holder refreshes its exclusive-file lock's mtime. */
const heartbeatMs = 60_000;

// ---------------------------------------------------------------------------------------------
// The addon

interface FlockAddon {
  flock(fd: number, operation: number): number;
  readonly LOCK_SH: number;
  readonly LOCK_EX: number;
  readonly LOCK_NB: number;
  readonly LOCK_UN: number;
}

function isFlockAddon(value: unknown): value is FlockAddon {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.flock === "function" &&
    ["LOCK_SH", "LOCK_EX", "LOCK_NB", "LOCK_UN"].every((name) => typeof v[name] === "number")
  );
}

const loadFlock = () => loadAddon("roci_flock", isFlockAddon);

/** True when the flock addon is built and loads, i.e. {@link lockIndex} can use flock. */
export function flockAvailable(): boolean {
  return "addon" in loadFlock();
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

interface Context {
  layoutDir: string;
  timeoutMs: number;
  /** performance.now() after which waiting stops. */
  deadline: number;
  debug: (message: string) => void;
  signal: AbortSignal | undefined;
}

function interrupted(ctx: Context): RociError {
  return new RociError(
    "INTERRUPTED",
    `layout ${ctx.layoutDir}: waiting for the index.json lock was aborted`,
    {
      cause: ctx.signal?.reason,
      subject: ctx.layoutDir,
    },
  );
}

/** Sleeps before attempt `attempt + 1`; false (without sleeping) once the deadline has passed. */
async function pause(ctx: Context, attempt: number): Promise<boolean> {
  const remaining = ctx.deadline - performance.now();
  if (remaining <= 0) return false;
  const backoff = Math.min(maxBackoffMs, minBackoffMs * 2 ** attempt);
  const ms = Math.min(remaining, backoff / 2 + (Math.random() * backoff) / 2);
  try {
    await sleep(ms, undefined, { signal: ctx.signal });
  } catch (error) {
    if (ctx.signal?.aborted) throw interrupted(ctx);
    throw error;
  }
  return true;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** Errors creating, opening or replacing a lock file. */
function lockFileError(error: unknown, ctx: Context, path: string, action: string): RociError {
  const errno = errnoOf(error);
  if (errno === "EROFS" || errno === "EACCES" || errno === "EPERM") {
    return new RociError("READ_ONLY", `layout ${ctx.layoutDir}: read-only (${errno} ${action} ${path})`, {
      cause: error,
      subject: ctx.layoutDir,
      hint:
        errno === "EROFS"
          ? "the file system is mounted read-only: write the layout to a writable directory"
          : `check the permissions of ${ctx.layoutDir} and ${path}; a lock file left behind by another ` +
            "user (buildkit creates index.json.lock with mode 0600) can be removed when no writer is running",
    });
  }
  if (errno === "ENOENT" || errno === "ENOTDIR") {
    const what = errno === "ENOENT" ? "does not exist" : "is not a directory";
    return new RociError("NOT_FOUND", `layout ${ctx.layoutDir}: ${what} (${errno} ${action} ${path})`, {
      cause: error,
      subject: ctx.layoutDir,
    });
  }
  return fromFsError(error, path, "lock file");
}

// ---------------------------------------------------------------------------------------------
// flock

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

const { EWOULDBLOCK, EAGAIN, EINTR } = osConstants.errno;
const retryableErrnos = new Set([EWOULDBLOCK, EAGAIN, EINTR]);

class FlockLock implements LayoutLock {
  readonly kind = "flock";
  #handle: FileHandle | undefined;
  readonly #addon: FlockAddon;

  constructor(handle: FileHandle, addon: FlockAddon) {
    this.#handle = handle;
    this.#addon = addon;
  }

  async release(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    // Closing the descriptor drops the lock anyway; unlocking first makes that explicit. The lock
    // file stays: see the module comment.
    this.#addon.flock(handle.fd, this.#addon.LOCK_UN);
    await handle.close();
  }
}

/** Whether `handle` is still the file at `path` (not unlinked, not replaced). */
async function isCurrent(handle: FileHandle, path: string): Promise<boolean> {
  const held = await handle.stat({ bigint: true });
  try {
    const current = await stat(path, { bigint: true });
    return held.dev === current.dev && held.ino === current.ino;
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return false;
    throw error;
  }
}

/**
 * Best effort, Linux only: the pids holding a write flock on `path`, from /proc/locks (empty when
 * unknown, e.g. across pid namespaces or on another OS).
 */
async function flockHolders(path: string): Promise<number[]> {
  try {
    const st = await stat(path, { bigint: true });
    const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
    const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
    const pids: number[] = [];
    for (const line of (await readFile("/proc/locks", "utf8")).split("\n")) {
      const m = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
      if (m === null) continue;
      const [, pid, maj, min, ino] = m;
      if (BigInt(`0x${maj}`) === major && BigInt(`0x${min}`) === minor && BigInt(ino!) === st.ino) {
        const n = Number(pid);
        if (n > 0) pids.push(n);
      }
    }
    return pids;
  } catch {
    return [];
  }
}

async function lockWithFlock(addon: FlockAddon, ctx: Context): Promise<LayoutLock> {
  const path = join(ctx.layoutDir, FLOCK_FILE);
  let handle: FileHandle | undefined;
  let waiting = false;
  let replaced = 0;
  try {
    for (let attempt = 0; ; attempt++) {
      if (ctx.signal?.aborted) throw interrupted(ctx);
      if (handle === undefined) {
        try {
          // O_RDWR rather than O_RDONLY: on a read-only file system an existing lock file would open
          // read-only fine, and flock over NFS needs a descriptor open for writing. libuv adds O_CLOEXEC,
          // so child processes never inherit (and keep alive) the lock. Mode 0644, not buildkit's 0600,
          // so that a buildkit running as another user can still open (O_RDONLY) and lock a file we left.
          handle = await open(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
        } catch (error) {
          throw lockFileError(error, ctx, path, "opening");
        }
      }
      const errno = addon.flock(handle.fd, addon.LOCK_EX | addon.LOCK_NB);
      if (errno === 0) {
        if (await isCurrent(handle, path)) {
          const lock = new FlockLock(handle, addon);
          handle = undefined;
          return lock;
        }
        ctx.debug(
          `${path} was removed or replaced while we waited for it (buildkit deletes it after use); locking the current one`,
        );
        await handle.close();
        handle = undefined;
        // Retry at once (the new file is probably free), a few times in a row at most, then back off.
        if (++replaced <= 8) continue;
        replaced = 0;
      } else if (!retryableErrnos.has(errno)) {
        throw new RociError("IO", `layout ${ctx.layoutDir}: cannot flock ${path}: ${errnoName(errno)}`, {
          subject: ctx.layoutDir,
          hint: "the file system may not support flock; ROCI_LOCK=exclusive-file makes roci use O_EXCL lock files",
        });
      } else if (!waiting) {
        waiting = true;
        ctx.debug(`${path} is locked by another process; waiting up to ${formatMs(ctx.timeoutMs)}`);
      }
      if (!(await pause(ctx, attempt))) throw await flockTimeout(ctx, path);
    }
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

async function flockTimeout(ctx: Context, path: string): Promise<RociError> {
  const pids = await flockHolders(path);
  const who = pids.length > 0 ? `pid ${pids.join(", ")}, ` : "";
  return new RociError(
    "LOCKED",
    `layout ${ctx.layoutDir}: index.json is locked by another process (${who}flock on ${FLOCK_FILE}); ` +
      `gave up after ${formatMs(ctx.timeoutMs)}`,
    {
      subject: ctx.layoutDir,
      hint:
        "another writer (roci, or buildx/buildkit exporting to this layout) is updating it: wait for it to " +
        "finish, or allow a longer lock timeout. A flock dies with its holder, so this lock is live.",
    },
  );
}

// ---------------------------------------------------------------------------------------------
// exclusive-file fallback

interface Owner {
  pid: number;
  hostname: string;
  created: string;
  token: string;
}

function parseOwner(raw: string): Owner | undefined {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== "object" || v === null) return undefined;
    const o = v as Record<string, unknown>;
    if (
      typeof o.pid === "number" &&
      Number.isInteger(o.pid) &&
      o.pid > 0 &&
      typeof o.hostname === "string" &&
      typeof o.created === "string" &&
      typeof o.token === "string"
    ) {
      return { pid: o.pid, hostname: o.hostname, created: o.created, token: o.token };
    }
  } catch {
    // unreadable: handled by the caller
  }
  return undefined;
}

/** What was found at the lock path: its identity, age and (when it parses) owner. */
interface Holder {
  ino: bigint;
  mtimeMs: number;
  raw: string | undefined;
  owner: Owner | undefined;
}

async function inspectHolder(path: string): Promise<Holder | undefined> {
  let st: BigIntStats;
  try {
    st = await lstat(path, { bigint: true });
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return undefined;
    throw error;
  }
  let raw: string | undefined;
  try {
    raw = await readFile(path, "utf8");
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return undefined;
    raw = undefined;
  }
  return {
    ino: st.ino,
    mtimeMs: Number(st.mtimeMs),
    raw,
    owner: raw === undefined ? undefined : parseOwner(raw),
  };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return errnoOf(error) !== "ESRCH";
  }
}

function describeHolder(holder: Holder): string {
  const o = holder.owner;
  if (o === undefined) return `an unknown holder (unreadable ${EXCLUSIVE_FILE})`;
  return `pid ${o.pid} on ${o.hostname === hostname() ? "this host" : `host ${o.hostname}`} (since ${o.created}, ${EXCLUSIVE_FILE})`;
}

/** Why `holder` is stale, or undefined when it is live. */
function staleReason(holder: Holder): string | undefined {
  const o = holder.owner;
  if (o !== undefined && o.hostname === hostname() && !pidAlive(o.pid)) {
    return `pid ${o.pid} on this host is gone`;
  }
  // A live holder refreshes the mtime every minute, so an old one means a dead or foreign holder
  // (or a reused pid) that can no longer be asked.
  const age = Date.now() - holder.mtimeMs;
  // roci links the lock into place with its owner already written, so an empty one was left by a
  // writer that died mid-create (older versions created it first): give it a moment, not minutes.
  if (holder.raw === "" && age > emptyLockGraceMs) return `it is empty (no owner) and ${formatMs(age)} old`;
  if (age > staleMs) {
    return `${describeHolder(holder)} has not refreshed it for ${formatMs(age)} (stale after ${formatMs(staleMs)})`;
  }
  return undefined;
}

/**
 * Removes the stale lock `holder` found at `path`. It is renamed to a unique name first and checked
 * to be the same file, so that two processes recovering the same stale lock cannot delete a fresh
 * lock that a third one created in between: a file that turns out not to be the stale one is put
 * back (unless yet another lock has appeared there since).
 */
async function removeStale(path: string, holder: Holder, ctx: Context): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return; // someone else recovered it
    throw lockFileError(error, ctx, path, "removing stale lock");
  }
  const moved = await inspectHolder(aside);
  if (moved !== undefined && (moved.ino !== holder.ino || moved.raw !== holder.raw)) {
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

class ExclusiveFileLock implements LayoutLock {
  readonly kind = "exclusive-file";
  readonly #path: string;
  readonly #token: string;
  readonly #debug: (message: string) => void;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(path: string, token: string, debug: (message: string) => void) {
    this.#path = path;
    this.#token = token;
    this.#debug = debug;
    this.#heartbeat = setInterval(() => {
      const now = new Date();
      utimes(path, now, now).catch((error: unknown) => {
        debug(`cannot refresh ${path}: ${errnoOf(error) ?? String(error)}`);
      });
    }, heartbeatMs);
    this.#heartbeat.unref();
  }

  async release(): Promise<void> {
    if (this.#heartbeat === undefined) return;
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    const holder = await inspectHolder(this.#path);
    if (holder?.owner?.token !== this.#token) {
      // Someone judged ours stale and took over (or removed it): theirs is not ours to delete.
      this.#debug(
        `${this.#path} is no longer ours (${holder ? describeHolder(holder) : "gone"}); leaving it`,
      );
      return;
    }
    try {
      await unlink(this.#path);
    } catch (error) {
      if (errnoOf(error) !== "ENOENT") throw fromFsError(error, this.#path, "lock file");
    }
  }
}

/**
 * Creates the lock file with its owner already inside: the record is written to a private temp file
 * and link(2)ed into place, which fails with EEXIST like O_EXCL — so a writer killed at any moment
 * never leaves an ownerless lock that only the ten-minute staleness rule could clear.
 */
async function createExclusive(path: string, owner: Owner, ctx: Context): Promise<boolean> {
  const temp = `${path}.new-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    await writeFile(temp, `${JSON.stringify(owner)}\n`, { flag: "wx", mode: 0o644 });
  } catch (error) {
    throw lockFileError(error, ctx, temp, "creating");
  }
  try {
    await link(temp, path);
    return true;
  } catch (error) {
    if (errnoOf(error) === "EEXIST") return false;
    throw lockFileError(error, ctx, path, "creating");
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

function exclusiveFileTimeout(ctx: Context, path: string, holder: Holder | undefined): RociError {
  const ours = holder?.owner?.hostname === hostname();
  return new RociError(
    "LOCKED",
    `layout ${ctx.layoutDir}: index.json is locked by ${holder ? describeHolder(holder) : `another process (${EXCLUSIVE_FILE})`}; ` +
      `gave up after ${formatMs(ctx.timeoutMs)}`,
    {
      subject: ctx.layoutDir,
      hint: ours
        ? "another roci process on this host is writing this layout: wait for it to finish, or allow a longer lock timeout"
        : `if no roci process is writing this layout any more, remove ${path} (it is treated as stale ${formatMs(staleMs)} after its holder last refreshed it)`,
    },
  );
}

async function lockWithExclusiveFile(ctx: Context): Promise<LayoutLock> {
  const path = join(ctx.layoutDir, EXCLUSIVE_FILE);
  let last: Holder | undefined;
  let waits = 0;
  // Retries without waiting, in a row: after a lock vanished or a stale one was removed the path is
  // probably free, but someone may keep beating us to it; the bound keeps the deadline in force.
  let immediate = 0;
  for (;;) {
    if (ctx.signal?.aborted) throw interrupted(ctx);
    const owner: Owner = {
      pid: process.pid,
      hostname: hostname(),
      created: new Date().toISOString(),
      token: randomBytes(16).toString("hex"),
    };
    if (await createExclusive(path, owner, ctx)) return new ExclusiveFileLock(path, owner.token, ctx.debug);
    const holder = await inspectHolder(path);
    let live = false;
    if (holder !== undefined) {
      const stale = staleReason(holder);
      if (stale === undefined) {
        live = true;
        last = holder;
        if (waits === 0) {
          ctx.debug(`${path} is held by ${describeHolder(holder)}; waiting up to ${formatMs(ctx.timeoutMs)}`);
        }
      } else {
        ctx.debug(`removing stale lock ${path}: ${stale}`);
        await removeStale(path, holder, ctx);
      }
    }
    if (!live && ++immediate <= 8) continue;
    immediate = 0;
    if (!(await pause(ctx, waits++))) throw exclusiveFileTimeout(ctx, path, last);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Takes the exclusive lock on `<layoutDir>/index.json`, waiting (without blocking the event loop)
 * up to `timeoutMs` for another holder. Uses flock on `index.json.lock` when the addon is
 * available, else O_EXCL `.roci-lock` files; `ROCI_LOCK=exclusive-file` forces the latter.
 *
 * Errors: `LOCKED` on timeout (naming the holder when known), `READ_ONLY` when the lock file cannot
 * be created or opened for writing (EROFS, EACCES, EPERM), `NOT_FOUND` when `layoutDir` does not
 * exist, `INTERRUPTED` when `signal` aborts.
 */
export async function lockIndex(layoutDir: string, options: LockOptions = {}): Promise<LayoutLock> {
  const timeoutMs = Math.max(0, options.timeoutMs ?? defaultTimeoutMs);
  const ctx: Context = {
    layoutDir,
    timeoutMs,
    deadline: performance.now() + timeoutMs,
    debug: options.onDebug ?? (() => undefined),
    signal: options.signal,
  };
  if (ctx.signal?.aborted) throw interrupted(ctx);
  if (process.env.ROCI_LOCK === "exclusive-file") {
    ctx.debug("using O_EXCL lock files: ROCI_LOCK=exclusive-file");
    return lockWithExclusiveFile(ctx);
  }
  const loaded = loadFlock();
  if ("error" in loaded) {
    ctx.debug(`using O_EXCL lock files: flock addon not available (${loaded.error})`);
    return lockWithExclusiveFile(ctx);
  }
  ctx.debug(`using flock on ${join(layoutDir, FLOCK_FILE)}`);
  return lockWithFlock(loaded.addon, ctx);
}

/**
 * Why the fallback lock file of `layoutDir` is stale (its holder is gone or silent), or undefined
 * when there is none or it is live. A read: `verify` reports stale locks; the next writer removes them.
 */
export async function staleLockReason(layoutDir: string): Promise<string | undefined> {
  const holder = await inspectHolder(join(layoutDir, EXCLUSIVE_FILE));
  return holder && staleReason(holder);
}
