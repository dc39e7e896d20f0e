/**
 * The one copy engine, for every pair of stores (after oras.Copy): walks an image graph from a
 * source, narrows indexes by platform when asked, and pushes children before parents — layers and
 * configs, then manifests, then indexes — so a destination never holds a manifest whose blobs are
 * missing. Blobs the destination has are skipped; local files move the cheapest correct way.
 */
import { Readable } from "node:stream";
import type { Digest } from "../digest/digest.ts";
import { digestOf } from "../digest/hash.ts";
import { RociError } from "../errors.ts";
import { fetchIndex, fetchManifest } from "../image/documents.ts";
import { selectImage } from "../image/select.ts";
import { type Descriptor, type ImageIndex, type Platform, parseIndex } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import type { PushOutcome } from "../store/layout-store.ts";
import type { BlobEntry, ImageStore, ReadOnlyStorage } from "../store/store.ts";
import { mapLimit } from "../util/map-limit.ts";

/** A destination: pushes verified blobs; may also take local files (hard link, reflink). */
export interface CopyDestination {
  push(descriptor: Descriptor, content: Readable): Promise<PushOutcome>;
  pushFile?(descriptor: Descriptor, path: string, options: { trustLinks?: boolean }): Promise<PushOutcome>;
  /** A byte range of a local file (a blob inside an archive). */
  pushRange?(descriptor: Descriptor, entry: BlobEntry): Promise<PushOutcome>;
}

export interface CopyOptions {
  /** Which images of an index to copy: all of them (default), or those matching these platforms. */
  platforms?: "all" | readonly Platform[];
  strictPlatform?: boolean;
  /** Blobs copied at once (default 4). */
  concurrency?: number;
  /** Take hard-linked blobs on their size alone (no bytes move; readers and `verify` still check them). */
  trustLinks?: boolean;
  onEvent?: (event: CopyEvent) => void;
}

export type CopyEvent =
  | { type: "plan"; blobs: number; bytes: number }
  | { type: "blob"; descriptor: Descriptor; outcome: PushOutcome; blobsDone: number; bytesDone: number };

export interface CopyResult {
  /** What the destination should name: the source root, or a narrowed manifest or index. */
  root: Descriptor;
  blobs: number;
  bytes: number;
  outcomes: Record<PushOutcome, number>;
}

/** Graphs deeper than this are refused: real images nest one or two indexes. */
const maxDepth = 16;

interface Node {
  descriptor: Descriptor;
  /** Bytes already fetched and verified (documents), pushed from memory. */
  raw?: Uint8Array;
  /** Push order: 0 for leaves, then one more than the highest child. */
  level: number;
}

export async function copyImage(
  source: ReadOnlyStorage,
  root: Descriptor,
  destination: CopyDestination,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const nodes = new Map<string, Node>();
  const top = await narrow(source, root, options);
  await walk(source, top.descriptor, nodes, top.raw);
  const ordered = [...nodes.values()].sort((a, b) => a.level - b.level);
  const total = ordered.reduce((sum, node) => sum + node.descriptor.size, 0);
  options.onEvent?.({ type: "plan", blobs: ordered.length, bytes: total });

  const outcomes: Record<PushOutcome, number> = { linked: 0, copied: 0, exists: 0 };
  let blobsDone = 0;
  let bytesDone = 0;
  for (const level of new Set(ordered.map((node) => node.level))) {
    const batch = ordered.filter((node) => node.level === level);
    await mapLimit(batch, options.concurrency ?? 4, async (node) => {
      const outcome = await transfer(source, destination, node, options);
      outcomes[outcome]++;
      blobsDone++;
      bytesDone += node.descriptor.size;
      options.onEvent?.({ type: "blob", descriptor: node.descriptor, outcome, blobsDone, bytesDone });
    });
  }
  return { root: top.descriptor, blobs: ordered.length, bytes: total, outcomes };
}

async function transfer(
  source: ReadOnlyStorage,
  destination: CopyDestination,
  node: Node,
  options: CopyOptions,
): Promise<PushOutcome> {
  const { descriptor, raw } = node;
  if (raw) return destination.push(descriptor, Readable.from([raw]));
  // A blob that is a whole local file can be linked or cloned; a range of an archive is streamed.
  const entry =
    destination.pushFile && hasBlobEntries(source)
      ? await source.blobEntry(descriptor.digest as Digest)
      : undefined;
  if (destination.pushFile && entry?.offset === 0) {
    return destination.pushFile(descriptor, entry.path, { trustLinks: options.trustLinks ?? false });
  }
  if (destination.pushRange && entry) return destination.pushRange(descriptor, entry);
  return destination.push(descriptor, await source.fetch(descriptor));
}

function hasBlobEntries(source: unknown): source is Pick<ImageStore, "blobEntry"> {
  return typeof (source as Partial<ImageStore>).blobEntry === "function";
}

/**
 * Applies the platform filter at the root: all images (the root as it is), one platform (its
 * manifest becomes the root), or several (a new index listing just those, so its digest changes).
 */
async function narrow(
  source: ReadOnlyStorage,
  root: Descriptor,
  options: CopyOptions,
): Promise<{ descriptor: Descriptor; raw?: Uint8Array }> {
  const platforms = options.platforms ?? "all";
  if (platforms === "all" || !isIndexType(root.mediaType)) return { descriptor: root };
  const chosen: Descriptor[] = [];
  for (const platform of platforms) {
    const selected = await selectImage(source, root, { platform, strict: options.strictPlatform ?? false });
    const entry = selected.descriptor.platform ? selected.descriptor : { ...selected.descriptor, platform };
    if (!chosen.some((existing) => existing.digest === entry.digest)) chosen.push(entry);
  }
  if (chosen.length === 1) return { descriptor: chosen[0]! };
  const original = (await fetchIndex(source, root)).value;
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: original.mediaType ?? root.mediaType,
    manifests: chosen,
  };
  const raw = new TextEncoder().encode(JSON.stringify(index));
  return { descriptor: { mediaType: root.mediaType, digest: digestOf(raw), size: raw.byteLength }, raw };
}

/** Records the graph below `descriptor` in `nodes`, each blob once, and returns its push level. */
async function walk(
  source: ReadOnlyStorage,
  descriptor: Descriptor,
  nodes: Map<string, Node>,
  raw?: Uint8Array,
  depth = 0,
): Promise<number> {
  const seen = nodes.get(descriptor.digest);
  if (seen) return seen.level;
  if (depth > maxDepth) {
    throw new RociError(
      "MANIFEST_CYCLE",
      `${descriptor.digest}: image graph nested more than ${maxDepth} levels`,
      {
        subject: descriptor.digest,
      },
    );
  }
  let level = 0;
  let bytes = raw;
  if (isIndexType(descriptor.mediaType)) {
    const index = raw ? parseIndex(raw, `index ${descriptor.digest}`) : await fetchIndex(source, descriptor);
    for (const child of index.value.manifests) {
      level = Math.max(level, 1 + (await walk(source, child, nodes, undefined, depth + 1)));
    }
    bytes = index.raw;
  } else if (isManifestType(descriptor.mediaType)) {
    const manifest = await fetchManifest(source, descriptor);
    for (const child of [manifest.value.config, ...manifest.value.layers]) {
      if (!nodes.has(child.digest)) nodes.set(child.digest, { descriptor: child, level: 0 });
    }
    level = 1;
    bytes = manifest.raw;
  }
  nodes.set(descriptor.digest, { descriptor, ...(bytes ? { raw: bytes } : {}), level });
  return level;
}
