/**
 * `verify`: everything reachable from some roots, checked — every document valid, every blob
 * present with the right size and digest — collected into a report instead of stopping at the
 * first problem. Untrusted documents are never followed: children of a corrupt manifest are not
 * visited. Over a whole layout it also lists blobs nothing references.
 */

import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Digest, parseDigest, requireVerifiable } from "../digest/digest.ts";
import { checkContent, hashFile } from "../digest/hash.ts";
import { isRociError, type RociErrorCode } from "../errors.ts";
import type { Descriptor } from "../spec/documents.ts";
import {
  isImageConfigType,
  isIndexType,
  isManifestType,
  isNonDistributableType,
} from "../spec/media-types.ts";
import { leftoverTempFiles } from "../store/gc.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import { EXCLUSIVE_FILE, staleLockReason } from "../store/lock.ts";
import type { ImageStore } from "../store/store.ts";
import { fetchConfig, fetchIndex, fetchManifest } from "./documents.ts";

export type ProblemKind =
  | "missing"
  | "corrupt"
  | "invalid"
  | "unverifiable"
  | "unreferenced"
  | "stray"
  | "leftover-temp"
  | "stale-lock";

export interface VerifyProblem {
  kind: ProblemKind;
  /** Errors make verify fail; warnings are reported only. */
  severity: "error" | "warning";
  code:
    | RociErrorCode
    | "UNREFERENCED_BLOB"
    | "STRAY_FILE"
    | "FOREIGN_LAYER_ABSENT"
    | "LEFTOVER_TEMP"
    | "STALE_LOCK";
  /** The blob's digest, or a path inside the layout for strays. */
  subject: string;
  mediaType?: string;
  message: string;
}

export interface VerifyReport {
  location: string;
  /** Blobs whose bytes were hashed and found right. */
  verifiedBlobs: number;
  verifiedBytes: number;
  problems: VerifyProblem[];
  ok: boolean;
}

export interface VerifyProgress {
  blobsDone: number;
  bytesDone: number;
  current?: string;
}

export interface VerifyOptions {
  /** Also list blobs that nothing reachable from the roots references (whole-layout verification). */
  reportUnreferenced?: boolean;
  onProgress?: (progress: VerifyProgress) => void;
}

const documentKinds = (mediaType: string) =>
  isIndexType(mediaType) || isManifestType(mediaType) || isImageConfigType(mediaType);

export async function verifyLayout(
  layout: ImageStore,
  roots: readonly Descriptor[],
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const reachable = new Set<string>();
  const progress: VerifyProgress = { blobsDone: 0, bytesDone: 0 };
  let verifiedBlobs = 0;
  let verifiedBytes = 0;
  const queue: Descriptor[] = [...roots];

  const report = (descriptor: Descriptor, error: unknown): void => {
    problems.push(problemOf(descriptor, error));
  };

  while (queue.length > 0) {
    const descriptor = queue.shift()!;
    if (reachable.has(descriptor.digest)) continue;
    reachable.add(descriptor.digest);
    progress.current = descriptor.digest;
    if (!parseDigest(descriptor.digest).verifiable) {
      report(descriptor, undefined);
      continue;
    }
    if (!(await layout.exists(descriptor))) {
      problems.push(
        missingProblem(
          descriptor,
          `${layout instanceof LayoutReader ? "layout" : "archive"} ${layout.location}`,
        ),
      );
      continue;
    }
    try {
      if (documentKinds(descriptor.mediaType)) {
        queue.push(...(await childrenOf(layout, descriptor)));
      } else {
        await checkBlob(layout, descriptor);
      }
      verifiedBlobs++;
      verifiedBytes += descriptor.size;
    } catch (error) {
      report(descriptor, error);
    }
    progress.blobsDone++;
    progress.bytesDone += descriptor.size;
    options.onProgress?.(progress);
  }

  if (options.reportUnreferenced) {
    const { digests, strays } = await layout.listBlobs();
    for (const digest of digests) {
      if (reachable.has(digest)) continue;
      problems.push({
        kind: "unreferenced",
        severity: "warning",
        code: "UNREFERENCED_BLOB",
        subject: digest,
        message: `blob ${digest}: not referenced from index.json (gc would remove it)`,
      });
    }
    // Crash leftovers and stale locks exist only where roci writes: layout directories.
    if (layout instanceof LayoutReader) problems.push(...(await writerLeftovers(layout.location)));
    for (const stray of strays) {
      problems.push({
        kind: "stray",
        severity: "warning",
        code: "STRAY_FILE",
        subject: stray,
        message: `${stray}: not a blob (its name is not a digest)`,
      });
    }
  }

  return {
    location: layout.location,
    verifiedBlobs,
    verifiedBytes,
    problems,
    ok: problems.every((problem) => problem.severity !== "error"),
  };
}

/** The descriptors a document points at, read verified (its own bytes are checked on the way). */
/** Temp files of interrupted writers and a stale fallback lock, as warnings. */
async function writerLeftovers(location: string): Promise<VerifyProblem[]> {
  const found: VerifyProblem[] = [];
  for (const file of await leftoverTempFiles(location)) {
    found.push({
      kind: "leftover-temp",
      severity: "warning",
      code: "LEFTOVER_TEMP",
      subject: file,
      message: `${file}: left by an interrupted writer (gc removes it once older than its grace period)`,
    });
  }
  const staleLock = await staleLockReason(location);
  if (staleLock !== undefined) {
    found.push({
      kind: "stale-lock",
      severity: "warning",
      code: "STALE_LOCK",
      subject: EXCLUSIVE_FILE,
      message: `${EXCLUSIVE_FILE}: stale lock, ${staleLock} (the next writer removes it)`,
    });
  }
  return found;
}

/**
 * Hashes a blob: straight from its file (or its byte range of an archive) with large reads, which
 * keeps pace with OpenSSL; through a verified stream when it lives in memory.
 */
async function checkBlob(store: ImageStore, descriptor: Descriptor): Promise<void> {
  const where = `blob ${descriptor.digest} in ${store.location}`;
  const entry = await store.blobEntry(descriptor.digest as Digest);
  if (entry === undefined) {
    await pipeline(
      await store.fetch(descriptor),
      new Writable({ write: (_chunk, _encoding, next) => next() }),
    );
    return;
  }
  const { algorithm } = requireVerifiable(descriptor.digest);
  // One byte more than promised is enough to tell a longer blob.
  const length = Math.min(entry.size, descriptor.size + 1);
  checkContent(descriptor, await hashFile(entry.path, algorithm, { offset: entry.offset, length }), where);
}

async function childrenOf(layout: ImageStore, descriptor: Descriptor): Promise<Descriptor[]> {
  if (isIndexType(descriptor.mediaType)) return (await fetchIndex(layout, descriptor)).value.manifests;
  if (isManifestType(descriptor.mediaType)) {
    const manifest = (await fetchManifest(layout, descriptor)).value;
    return [manifest.config, ...manifest.layers];
  }
  await fetchConfig(layout, descriptor);
  return [];
}

function missingProblem(descriptor: Descriptor, location: string): VerifyProblem {
  // Foreign / non-distributable layers are shipped without their bytes on purpose (IL-5).
  const foreign = isNonDistributableType(descriptor.mediaType) || (descriptor.urls?.length ?? 0) > 0;
  return {
    kind: "missing",
    severity: foreign ? "warning" : "error",
    code: foreign ? "FOREIGN_LAYER_ABSENT" : "BLOB_MISSING",
    subject: descriptor.digest,
    mediaType: descriptor.mediaType,
    message: foreign
      ? `blob ${descriptor.digest}: absent, allowed (non-distributable layer, fetched from its urls)`
      : `blob ${descriptor.digest}: missing from ${location}`,
  };
}

function problemOf(descriptor: Descriptor, error: unknown): VerifyProblem {
  const base = { subject: descriptor.digest, mediaType: descriptor.mediaType, severity: "error" as const };
  if (error === undefined) {
    return {
      ...base,
      kind: "unverifiable",
      code: "UNSUPPORTED_DIGEST",
      message: `blob ${descriptor.digest}: algorithm cannot be verified by roci`,
    };
  }
  if (isRociError(error)) {
    const corrupt = error.code === "DIGEST_MISMATCH" || error.code === "SIZE_MISMATCH";
    return { ...base, kind: corrupt ? "corrupt" : "invalid", code: error.code, message: error.message };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { ...base, kind: "invalid", code: "IO", message: `blob ${descriptor.digest}: ${message}` };
}
