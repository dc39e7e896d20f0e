/**
 * The entries of a directory tree, in the order and with the attributes a reproducible layer needs
 * (SPEC-CHECKLIST §6): sorted bytewise with parents first, hard links detected and written as links
 * to the first path in that order, times in whole seconds, optionally clamped or pinned to
 * SOURCE_DATE_EPOCH, ownership kept or mapped to 0:0. Nothing depends on readdir order or locale.
 */
import { createReadStream, readFileSync } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { fromFsError, RociError } from "../errors.ts";
import { fsCalls } from "../native/fs-calls.ts";
import { mapLimit } from "../util/map-limit.ts";
import { comparePaths, type EntryType, type LayerEntry } from "./entry.ts";

export interface WalkOptions {
  /** SOURCE_DATE_EPOCH: entry times are pinned to it, or clamped (kept when older). */
  sourceDateEpoch?: number;
  timestamps?: "pin" | "clamp";
  /** "keep" the files' uid/gid (default), or "root": 0:0. */
  ownership?: "keep" | "root";
  /** Record extended attributes (needs the roci_fs addon); off by default, as they vary by host. */
  xattrs?: boolean;
}

const readChunk = 1024 * 1024;
const smallFile = 1024 * 1024;

export async function walkDirectory(root: string, options: WalkOptions = {}): Promise<LayerEntry[]> {
  const rootInfo = await lstat(root).catch((error: unknown) => {
    throw fromFsError(error, root, "directory");
  });
  if (!rootInfo.isDirectory()) {
    throw new RociError("USAGE", `${root}: not a directory`, { subject: root });
  }
  const found: Array<{ path: string; full: string }> = [];
  const visit = async (relative: string): Promise<void> => {
    const dirents = await readdir(join(root, relative), { withFileTypes: true });
    for (const dirent of dirents) {
      const path = relative ? `${relative}/${dirent.name}` : dirent.name;
      found.push({ path, full: join(root, path) });
      if (dirent.isDirectory()) await visit(path);
    }
  };
  await visit("");
  found.sort((a, b) => comparePaths(a.path, b.path));

  const xattrCalls = options.xattrs ? requireXattrs() : undefined;
  const entries = await mapLimit(found, 32, async ({ path, full }) => {
    const info = await lstat(full, { bigint: true });
    const entry = describe(path, info, options);
    if (entry.type === "symlink") entry.linkname = await readlink(full);
    // Small files are read in one synchronous call: a thread-pool round trip for each of open,
    // read and close would dominate a tree of many small files (gzip runs meanwhile, off-thread).
    if (entry.type === "file") {
      entry.open = () =>
        entry.size <= smallFile ? readFileSync(full) : createReadStream(full, { highWaterMark: readChunk });
    }
    if (xattrCalls) {
      const names = xattrCalls.llistxattr(full).sort();
      if (names.length > 0)
        entry.xattrs = Object.fromEntries(names.map((name) => [name, xattrCalls.lgetxattr(full, name)]));
    }
    return { entry, inode: info.nlink > 1n && entry.type === "file" ? `${info.dev}:${info.ino}` : undefined };
  });

  // Hard links: the first path in sorted order carries the content, later ones link to it.
  const firstPath = new Map<string, string>();
  for (const { entry, inode } of entries) {
    if (inode === undefined) continue;
    const first = firstPath.get(inode);
    if (first === undefined) {
      firstPath.set(inode, entry.path);
      continue;
    }
    entry.type = "link";
    entry.linkname = first;
    entry.size = 0;
    delete entry.open;
  }
  return entries.map(({ entry }) => entry);
}

function describe(path: string, info: import("node:fs").BigIntStats, options: WalkOptions): LayerEntry {
  const type = entryType(info, path);
  const mtime = Number(info.mtimeMs / 1000n);
  const epoch = options.sourceDateEpoch;
  const root = options.ownership === "root";
  const entry: LayerEntry = {
    path,
    type,
    mode: Number(info.mode & 0o7777n),
    uid: root ? 0 : Number(info.uid),
    gid: root ? 0 : Number(info.gid),
    mtime: epoch === undefined ? mtime : options.timestamps === "clamp" ? Math.min(mtime, epoch) : epoch,
    size: type === "file" ? Number(info.size) : 0,
  };
  if (type === "char" || type === "block") {
    entry.devmajor = Number((info.rdev >> 8n) & 0xfffn);
    entry.devminor = Number((info.rdev & 0xffn) | ((info.rdev >> 12n) & 0xfff00n));
  }
  return entry;
}

function entryType(info: import("node:fs").BigIntStats, path: string): EntryType {
  if (info.isFile()) return "file";
  if (info.isDirectory()) return "dir";
  if (info.isSymbolicLink()) return "symlink";
  if (info.isCharacterDevice()) return "char";
  if (info.isBlockDevice()) return "block";
  if (info.isFIFO()) return "fifo";
  throw new RociError("USAGE", `${path}: sockets cannot be stored in a layer`, { subject: path });
}

function requireXattrs() {
  const calls = fsCalls();
  if ("error" in calls) {
    throw new RociError("USAGE", `recording xattrs needs roci's native addon: ${calls.error}`, {
      hint: "reinstall roci where a C compiler is available (npm ci builds the addon), or drop xattrs",
    });
  }
  return calls.calls;
}
