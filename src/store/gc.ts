/**
 * Garbage collection of a layout: mark everything reachable from index.json — nested indexes,
 * manifests, configs, layers, and referrers whose subject is reachable — then sweep only
 * unreachable blobs older than a grace period, so a concurrent writer's fresh blobs survive (writers
 * also refresh the time of an existing blob they rely on). Runs under the index lock, and stops
 * without deleting anything when a reachable document cannot be read: unsure means keep.
 */
import { lstat, readdir, readFile, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Digest } from "../digest/digest.ts";
import { errnoOf } from "../errors.ts";
import { fetchIndex, fetchManifest } from "../image/documents.ts";
import { type Descriptor, defaultDocumentLimit, parseJsonBytes } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import type { LayoutReader } from "./layout-reader.ts";
import { type LayoutStore, tempDirName } from "./layout-store.ts";

export const defaultGraceMs = 60 * 60 * 1000;

export interface GcOptions {
  /** Unreachable blobs younger than this stay (default one hour). */
  graceMs?: number;
  /** The current time, for tests. */
  now?: number;
}

export interface GcReport {
  location: string;
  dryRun: boolean;
  reachable: number;
  removed: Array<{ digest: string; size: number }>;
  /** Unreachable blobs kept because they are younger than the grace period. */
  young: Array<{ digest: string; size: number }>;
  tempFiles: string[];
  bytesReclaimed: number;
}

/**
 * When a blob last changed for gc's purposes: its mtime (writers refresh it when they rely on an
 * existing blob) — except for a hard link, which keeps its source's old mtime and must not be
 * touched: link(2) moved its ctime to now, so the later of the two counts.
 */
function ageMs(info: { mtimeMs: number; ctimeMs: number; nlink: number }): number {
  return info.nlink > 1 ? Math.max(info.mtimeMs, info.ctimeMs) : info.mtimeMs;
}

/** What gc would remove, without removing anything or taking a lock: `gc --dry-run`, read-only. */
export async function planGarbage(layout: LayoutReader, options: GcOptions = {}): Promise<GcReport> {
  const cutoff = (options.now ?? Date.now()) - (options.graceMs ?? defaultGraceMs);
  const reachable = await mark(layout);
  const report: GcReport = {
    location: layout.location,
    dryRun: true,
    reachable: reachable.size,
    removed: [],
    young: [],
    tempFiles: await staleTempFiles(layout.location, cutoff),
    bytesReclaimed: 0,
  };
  for (const digest of (await layout.listBlobs()).digests) {
    if (reachable.has(digest)) continue;
    const info = await lstat(layout.blobPath(digest));
    const entry = { digest, size: info.size };
    if (ageMs(info) > cutoff) {
      report.young.push(entry);
    } else {
      report.removed.push(entry);
      report.bytesReclaimed += info.size;
    }
  }
  return report;
}

/** Plans and deletes under the index lock, so no writer changes index.json meanwhile. */
export async function collectGarbage(store: LayoutStore, options: GcOptions = {}): Promise<GcReport> {
  return store.withIndexLock(async () => {
    const report = await planGarbage(store, options);
    for (const { digest } of report.removed) await unlink(store.blobPath(digest));
    for (const file of report.tempFiles) await unlink(join(store.location, file)).catch(() => {});
    await rmdir(join(store.location, tempDirName)).catch(() => {});
    return { ...report, dryRun: false };
  });
}

/** Every digest reachable from index.json, following referrers (manifests whose subject is reachable). */
async function mark(store: LayoutReader): Promise<Set<string>> {
  const reachable = new Set<string>();
  const visit = async (descriptors: readonly Descriptor[]): Promise<void> => {
    for (const descriptor of descriptors) {
      if (reachable.has(descriptor.digest)) continue;
      reachable.add(descriptor.digest);
      if (!(await store.exists(descriptor))) continue;
      if (isIndexType(descriptor.mediaType)) {
        await visit((await fetchIndex(store, descriptor)).value.manifests);
      } else if (isManifestType(descriptor.mediaType)) {
        const manifest = (await fetchManifest(store, descriptor)).value;
        await visit([manifest.config, ...manifest.layers]);
      }
    }
  };
  await visit((await store.index()).manifests);

  // Referrers are found by what they point at, so read each unreachable small blob once for a subject.
  const { digests } = await store.listBlobs();
  const referrers: Array<{ subject: string; self: Descriptor }> = [];
  for (const digest of digests) {
    if (reachable.has(digest)) continue;
    const document = (await readSmallJson(store.blobPath(digest))) as
      | { subject?: { digest?: unknown }; mediaType?: unknown }
      | undefined;
    const subject = document?.subject?.digest;
    const mediaType = document?.mediaType;
    if (typeof subject !== "string" || typeof mediaType !== "string") continue;
    const size = (await lstat(store.blobPath(digest))).size;
    referrers.push({ subject, self: { mediaType, digest: digest as Digest, size } });
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const { subject, self } of referrers) {
      if (reachable.has(subject) && !reachable.has(self.digest)) {
        await visit([self]);
        changed = true;
      }
    }
  }
  return reachable;
}

async function readSmallJson(path: string): Promise<object | undefined> {
  try {
    const info = await lstat(path);
    if (info.size > defaultDocumentLimit || info.size < 2) return undefined;
    const json = parseJsonBytes(await readFile(path), path);
    return typeof json === "object" && json !== null ? json : undefined;
  } catch {
    return undefined;
  }
}

/** Temp files that crashed writers left behind, older than the grace period. */
async function staleTempFiles(root: string, cutoff: number): Promise<string[]> {
  const stale: string[] = [];
  for (const relative of await leftoverTempFiles(root)) {
    if (ageMs(await lstat(join(root, relative))) <= cutoff) stale.push(relative);
  }
  return stale;
}

/** Temp files of roci writers in a layout, relative to it: in-progress or left by a crash. */
export async function leftoverTempFiles(root: string): Promise<string[]> {
  const candidates: string[] = [];
  try {
    candidates.push(...(await readdir(join(root, tempDirName))).map((name) => join(tempDirName, name)));
  } catch (error) {
    if (errnoOf(error) !== "ENOENT") throw error;
  }
  // index.json temp files of writeFileAtomically, and owner records of a fallback lock being taken.
  candidates.push(
    ...(await readdir(root)).filter((name) =>
      /^(index\.json\.\d+\.[0-9a-f]+\.tmp|\.roci-lock\.new-\d+-[0-9a-f]+)$/.test(name),
    ),
  );
  return candidates;
}
