/**
 * The vocabulary every image source speaks, after oras-go's `content` package: tiny capability
 * interfaces, composed. Read-only is a type, not a flag — a `ReadOnlyTarget` has no way to write.
 * Layout directories implement it today; archives and registries implement the same interfaces.
 */
import type { Readable } from "node:stream";
import type { Digest } from "../digest/digest.ts";
import type { Descriptor, ImageIndex } from "../spec/documents.ts";

export interface Fetcher {
  /**
   * The blob's bytes as a stream that fails closed: it errors (SIZE_MISMATCH, DIGEST_MISMATCH)
   * instead of ending when the bytes are not what `descriptor` promises.
   */
  fetch(descriptor: Descriptor): Promise<Readable>;
}

export interface ReadOnlyStorage extends Fetcher {
  /** Whether the blob is present (present, not verified). */
  exists(descriptor: Descriptor): Promise<boolean>;
}

/** What a user names inside a store: a tag, a digest, both, or neither (the store's default). */
export interface Selector {
  tag?: string | undefined;
  digest?: Digest | undefined;
}

export interface Resolver {
  /** The descriptor a tag or digest names (an index stays an index). */
  resolve(selector: Selector): Promise<Descriptor>;
}

export interface TagLister {
  tags(): Promise<string[]>;
}

export interface ReadOnlyTarget extends ReadOnlyStorage, Resolver, TagLister {
  /** Where the store is, for messages: a path or a registry repository. */
  readonly location: string;
}

/** Where a blob's bytes lie in a local file: a whole blob file, or a byte range of an archive. */
export interface BlobEntry {
  path: string;
  offset: number;
  size: number;
}

/**
 * A store on this machine whose images can be listed and whose blobs can be walked: a layout
 * directory, an OCI archive, a docker-save archive. What `ls`, `verify` and `blob` work on.
 */
export interface ImageStore extends ReadOnlyTarget {
  /** index.json, or its equivalent (a docker-save archive's images, one entry per name). */
  index(): Promise<ImageIndex>;
  /** Every blob, and what under blobs/ is not one. */
  listBlobs(): Promise<{ digests: Digest[]; strays: string[] }>;
  /** The descriptor of any blob known only by digest (its bytes are still verified when fetched). */
  describeFile(digest: Digest): Promise<Descriptor>;
  /** Where a blob's bytes are, to hash or copy them without a stream; undefined when they are in memory. */
  blobEntry(digest: Digest): Promise<BlobEntry | undefined>;
}
