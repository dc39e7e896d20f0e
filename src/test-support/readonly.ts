/**
 * Read-only proofs for tests: a tree snapshot to compare before and after a read, a read-only bind
 * mount (writes fail with EROFS, even for root) and an unwritable copy (`chmod -R a-w`: writes by
 * uid 65534 fail with EACCES). The mount and the copy need root; both clean up after themselves.
 */
import { execFile } from "node:child_process";
import type { BigIntStats } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

async function run(file: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(file, args);
  } catch (error) {
    const e = error as Error & { stderr?: string };
    throw new Error(`${file} ${args.join(" ")} failed: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

function typeOf(st: BigIntStats): string {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  return "unknown";
}

/**
 * One sorted line per entry under `dir` (itself included as "."), never following symlinks:
 * relative path, type, size, mtime and ctime in ns, mode (octal), uid:gid, inode, link count and, for
 * symlinks, the target. Reading never changes any of these (atime is left out), so two equal snapshots
 * show that nothing was created, removed, renamed, written, touched, chmod-ed or chown-ed.
 */
export async function snapshotTree(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const visit = async (path: string, rel: string): Promise<void> => {
    const st = await lstat(path, { bigint: true });
    const type = typeOf(st);
    const target = type === "symlink" ? await readlink(path) : "";
    lines.push(
      [
        rel,
        type,
        st.size,
        st.mtimeNs,
        st.ctimeNs,
        (st.mode & 0o7777n).toString(8).padStart(4, "0"),
        `${st.uid}:${st.gid}`,
        st.ino,
        st.nlink,
        target,
      ].join("\t"),
    );
    if (type === "dir") {
      for (const name of await readdir(path)) {
        await visit(join(path, name), rel === "." ? name : `${rel}/${name}`);
      }
    }
  };
  await visit(dir, ".");
  return lines.sort();
}

/** Lines only in `before` (prefixed "- ") and only in `after` ("+ "): empty when the snapshots are equal. */
export function diffSnapshots(before: string[], after: string[]): string[] {
  const a = new Set(before);
  const b = new Set(after);
  return [
    ...before.filter((l) => !b.has(l)).map((l) => `- ${l}`),
    ...after.filter((l) => !a.has(l)).map((l) => `+ ${l}`),
  ];
}

/** Runs `fn` and throws (listing the changed entries) if the tree under `dir` changed meanwhile. */
export async function expectTreeUnchanged<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const before = await snapshotTree(dir);
  const result = await fn();
  const changes = diffSnapshots(before, await snapshotTree(dir));
  if (changes.length > 0) throw new Error(`${dir} changed:\n${changes.join("\n")}`);
  return result;
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root`);
}

async function unmount(mountpoint: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await run("umount", [mountpoint]);
      return;
    } catch (error) {
      if (attempt >= 20) {
        await run("umount", ["-l", mountpoint]);
        return;
      }
      if (!/busy/i.test((error as Error).message)) throw error;
      await sleep(50);
    }
  }
}

/**
 * Bind-mounts `src` (a directory or a file) read-only at `<fresh temp dir>/<basename(src)>` and runs
 * `fn` with that path; any write there fails with EROFS, even as root. Always unmounts and removes
 * the mountpoint (never recursively: nothing is deleted through a mount). Relative symlinks that leave
 * `src` (like the `symlinked` fixture's) resolve beside the mountpoint: mount the fixtures root instead.
 */
export async function withReadOnlyBindMount<T>(src: string, fn: (mounted: string) => Promise<T>): Promise<T> {
  requireRoot("withReadOnlyBindMount");
  const parent = await mkdtemp(join(tmpdir(), "roci-ro-"));
  await chmod(parent, 0o755);
  const mountpoint = join(parent, basename(src));
  const isDir = (await stat(src)).isDirectory();
  if (isDir) await mkdir(mountpoint);
  else await writeFile(mountpoint, "", { flag: "wx" });
  let mounted = false;
  try {
    await run("mount", ["--bind", src, mountpoint]);
    mounted = true;
    await run("mount", ["-o", "remount,bind,ro", mountpoint]);
    return await fn(mountpoint);
  } finally {
    if (mounted) await unmount(mountpoint);
    if (isDir) await rmdir(mountpoint);
    else await unlink(mountpoint);
    await rmdir(parent);
  }
}

/**
 * Copies `src` (`cp -a`) to `<fresh world-traversable temp dir>/<basename(src)>`, keeps root ownership,
 * makes it world-readable and then unwritable for everyone (`chmod -R a+rX`, `chmod -R a-w`), and runs
 * `fn` with the copy's path: uid 65534 gets EACCES on any write (root still could: test writes as
 * nobody). Restores u+w and removes the copy afterwards. Relative symlinks that leave `src` break in
 * the copy: copy the fixtures root instead.
 */
export async function withUnwritableCopy<T>(src: string, fn: (path: string) => Promise<T>): Promise<T> {
  requireRoot("withUnwritableCopy");
  const parent = await mkdtemp(join(tmpdir(), "roci-unwritable-"));
  await chmod(parent, 0o755);
  const copy = join(parent, basename(src));
  try {
    await run("cp", ["-a", "--", src, copy]);
    await run("chmod", ["-R", "a+rX", "--", copy]);
    await run("chmod", ["-R", "a-w", "--", copy]);
    return await fn(copy);
  } finally {
    await run("chmod", ["-R", "u+w", "--", copy]).catch(() => undefined);
    await rm(parent, { recursive: true, force: true });
  }
}
