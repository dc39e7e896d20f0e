/**
 * An OCI image layout directory, read without a single write (DESIGN.md "Read-only guarantee"):
 * only stat, open(O_RDONLY), read and readdir. No lock file, no ingest directory, no probe.
 * Readers are lock-free: roci's writers replace index.json by atomic rename, and a torn read of a
 * tool that rewrites it in place is retried briefly.
 */
import { open, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline, type Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { type Digest, isDigest, parseDigest, requireVerifiable, shortDigest } from "../digest/digest.ts";
import { checkSize, VerifyingStream } from "../digest/hash.ts";
import { errnoOf, fromFsError, RociError } from "../errors.ts";
import {
  type Descriptor,
  defaultDocumentLimit,
  type ImageIndex,
  parseIndex,
  parseLayoutHeader,
} from "../spec/documents.ts";
import { describeDocument, resolveInLayout } from "./layout-resolution.ts";
import type { BlobEntry, ImageStore, Selector } from "./store.ts";
import { tagsOf } from "./tag-lookup.ts";

export interface LayoutReaderOptions {
  /** Called with messages a user should see but that do not stop the work. */
  onWarning?: (message: string) => void;
}

/** The layout versions roci reads: the spec's 1.0.0 and any later 1.x. */
const supportedLayoutVersion = /^1\.\d+\.\d+$/;
/** How a reader rides out an in-place rewrite of index.json by another tool. */
const tornReadRetries = 3;
const tornReadDelayMs = 50;
const streamChunk = 1024 * 1024;

export class LayoutReader implements ImageStore {
  readonly location: string;
  readonly #onWarning: (message: string) => void;

  protected constructor(root: string, options: LayoutReaderOptions) {
    this.location = root;
    this.#onWarning = options.onWarning ?? (() => {});
  }

  /** Opens a layout after checking that it is one. */
  static async open(root: string, options: LayoutReaderOptions = {}): Promise<LayoutReader> {
    await LayoutReader.check(root);
    return new LayoutReader(root, options);
  }

  /** Throws unless `root` is a layout: a directory with a supported `oci-layout` file. */
  protected static async check(root: string): Promise<void> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(root);
    } catch (error) {
      throw errnoOf(error) === "ENOENT"
        ? new RociError("NOT_FOUND", `layout ${root}: no such directory`, { subject: root, cause: error })
        : fromFsError(error, root, "layout");
    }
    if (!info.isDirectory()) {
      throw new RociError("INVALID_LAYOUT", `layout ${root}: is a file, not an OCI layout directory`, {
        subject: root,
        hint: "an OCI layout is a directory holding oci-layout, index.json and blobs/",
      });
    }
    const headerPath = join(root, "oci-layout");
    let raw: Uint8Array;
    try {
      raw = await readFile(headerPath);
    } catch (error) {
      if (errnoOf(error) === "ENOENT") {
        throw new RociError(
          "INVALID_LAYOUT",
          `layout ${root}: no oci-layout file, so not an OCI image layout`,
          {
            subject: root,
            hint: "point roci at the directory that holds oci-layout and index.json",
          },
        );
      }
      throw fromFsError(error, headerPath, "layout header");
    }
    const header = parseLayoutHeader(raw, headerPath);
    if (!supportedLayoutVersion.test(header.imageLayoutVersion)) {
      throw new RociError(
        "INVALID_LAYOUT",
        `layout ${root}: imageLayoutVersion "${header.imageLayoutVersion}" is not supported (expected 1.0.0)`,
        { subject: headerPath },
      );
    }
  }

  /** `blobs/<alg>/<hex>` of a verifiable digest; anything else never becomes a path. */
  blobPath(digest: string): string {
    const { algorithm, encoded } = requireVerifiable(digest);
    return join(this.location, "blobs", algorithm, encoded);
  }

  /** The parsed `index.json`, retried briefly when it does not parse (another tool mid-rewrite). */
  async index(): Promise<ImageIndex> {
    const path = join(this.location, "index.json");
    for (let attempt = 1; ; attempt++) {
      let raw: Uint8Array;
      try {
        raw = await readCapped(path, defaultDocumentLimit, path);
      } catch (error) {
        if (errnoOf(error) === "ENOENT") {
          throw new RociError("INVALID_LAYOUT", `layout ${this.location}: no index.json`, { subject: path });
        }
        throw fromFsError(error, path, "index.json");
      }
      try {
        return parseIndex(raw, path).value;
      } catch (error) {
        const torn =
          error instanceof RociError && error.code === "INVALID_DOCUMENT" && /JSON/.test(error.message);
        if (!torn || attempt >= tornReadRetries) throw error;
        await sleep(tornReadDelayMs * attempt);
      }
    }
  }

  async tags(): Promise<string[]> {
    return tagsOf((await this.index()).manifests);
  }

  /** DESIGN.md's resolution rules (see layout-resolution.ts). */
  async resolve(selector: Selector): Promise<Descriptor> {
    return resolveInLayout(this, selector, this.#onWarning);
  }

  /** The descriptor of a manifest or index known only by digest: size from the file, type from its JSON. */
  async describeBlob(digest: Digest): Promise<Descriptor> {
    const path = this.blobPath(digest);
    const where = `blob ${digest} in ${this.location}`;
    let raw: Uint8Array;
    try {
      raw = await readCapped(path, defaultDocumentLimit, where);
    } catch (error) {
      throw this.#blobError(error, digest, path);
    }
    return describeDocument(raw, digest, where);
  }

  /** The descriptor of any blob known only by digest, its size taken from the file (content still verified). */
  async describeFile(digest: Digest): Promise<Descriptor> {
    const path = this.blobPath(digest);
    try {
      const info = await stat(path);
      return { mediaType: "application/octet-stream", digest, size: info.size };
    } catch (error) {
      throw this.#blobError(error, digest, path);
    }
  }

  /** The blob's file, to hash or link it without a stream; undefined when it is missing. */
  async blobEntry(digest: Digest): Promise<BlobEntry | undefined> {
    const path = this.blobPath(digest);
    try {
      return { path, offset: 0, size: (await stat(path)).size };
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return undefined;
      throw fromFsError(error, path, "blob");
    }
  }

  async exists(descriptor: Descriptor): Promise<boolean> {
    try {
      return (await stat(this.blobPath(descriptor.digest))).isFile();
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return false;
      throw fromFsError(error, this.blobPath(descriptor.digest), "blob");
    }
  }

  async fetch(descriptor: Descriptor): Promise<Readable> {
    const path = this.blobPath(descriptor.digest);
    const where = `blob ${descriptor.digest} in ${this.location}`;
    const verifier = new VerifyingStream(descriptor, where);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, "r");
    } catch (error) {
      throw this.#blobError(error, descriptor.digest, path);
    }
    try {
      const { size } = await handle.stat();
      // Fail before streaming when the size alone gives the blob away.
      checkSize(descriptor, size, where);
    } catch (error) {
      await handle.close();
      throw error;
    }
    const source = handle.createReadStream({ highWaterMark: streamChunk });
    // pipeline destroys both ends when either fails, so a consumer that stops early leaks no fd.
    pipeline(source, verifier, (error) => {
      if (error && !verifier.destroyed) verifier.destroy(fromFsError(error, path, "blob"));
    });
    return verifier;
  }

  /** Every file under `blobs/`, as digests where the name is one (others are reported as strays). */
  async listBlobs(): Promise<{ digests: Digest[]; strays: string[] }> {
    const digests: Digest[] = [];
    const strays: string[] = [];
    const blobsDir = join(this.location, "blobs");
    let algorithms: string[];
    try {
      algorithms = await readdir(blobsDir);
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return { digests, strays };
      throw fromFsError(error, blobsDir, "blobs directory");
    }
    for (const algorithm of algorithms.sort()) {
      let names: string[];
      try {
        names = await readdir(join(blobsDir, algorithm));
      } catch (error) {
        if (errnoOf(error) === "ENOTDIR") {
          strays.push(join("blobs", algorithm));
          continue;
        }
        throw fromFsError(error, join(blobsDir, algorithm), "blobs directory");
      }
      for (const name of names.sort()) {
        const candidate = `${algorithm}:${name}`;
        if (isDigest(candidate) && parseDigest(candidate).verifiable) digests.push(candidate as Digest);
        else strays.push(join("blobs", algorithm, name));
      }
    }
    return { digests, strays };
  }

  #blobError(error: unknown, digest: string, path: string): RociError {
    if (errnoOf(error) === "ENOENT") {
      return new RociError("BLOB_MISSING", `blob ${digest}: missing from layout ${this.location}`, {
        subject: digest,
        cause: error,
      });
    }
    return fromFsError(error, path, `blob ${shortDigest(digest)}`);
  }
}

/** Reads a whole file only if it is at most `limit` bytes; says so before reading otherwise. */
async function readCapped(path: string, limit: number, where: string): Promise<Uint8Array> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    if (size > limit) {
      throw new RociError(
        "DOCUMENT_TOO_LARGE",
        `${where}: ${size} bytes is over the ${limit}-byte limit for JSON documents`,
        { subject: path },
      );
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}
