/**
 * An OCI image layout inside a tar (`oci-archive:`, skopeo's and buildx's `type=oci` output, and
 * Docker ≥ 25 `docker save` output, which is also a layout), read in place: the archive is indexed
 * once and every blob is served as a byte range of it (SPEC-CHECKLIST §5). Nothing is extracted and
 * nothing is written next to it; a compressed archive is decompressed once into a temp file.
 *
 * The semantics are LayoutReader's: `oci-layout` is checked, a digest wins without reading
 * index.json, tags are looked up by `lookupTag`, and every fetch is verified. Symlink and hard-link
 * entries are resolved within the archive, never on the filesystem.
 */
import type { Readable } from "node:stream";
import { type Digest, isDigest, parseDigest, requireVerifiable } from "../digest/digest.ts";
import { checkSize } from "../digest/hash.ts";
import { RociError } from "../errors.ts";
import {
  type Descriptor,
  defaultDocumentLimit,
  type ImageIndex,
  parseIndex,
  parseLayoutHeader,
} from "../spec/documents.ts";
import { describeDocument, resolveInLayout } from "../store/layout-resolution.ts";
import type { BlobEntry, ImageStore, Selector } from "../store/store.ts";
import { tagsOf } from "../store/tag-lookup.ts";
import { type OpenedArchive, openArchive, readEntry, streamVerified } from "./archive-source.ts";
import type { ResolvedEntry, TarIndex } from "./tar-index.ts";

export interface ArchiveStoreOptions {
  /** Called with messages a user should see but that do not stop the work. */
  onWarning?: (message: string) => void;
  /** Called with what happens behind the scenes (decompression, indexing). */
  onDebug?: (message: string) => void;
}

/** The layout versions read: the spec's 1.0.0 and any later 1.x (as LayoutReader). */
const supportedLayoutVersion = /^1\.\d+\.\d+$/;

export class OciArchiveStore implements ImageStore {
  /** The archive path, as given. */
  readonly location: string;
  readonly #archive: OpenedArchive;
  readonly #onWarning: (message: string) => void;

  protected constructor(archive: OpenedArchive, options: ArchiveStoreOptions) {
    this.location = archive.source.archive;
    this.#archive = archive;
    this.#onWarning = options.onWarning ?? (() => {});
  }

  /** Opens (decompressing if needed) and indexes an archive, then checks that it holds a layout. */
  static async open(path: string, options: ArchiveStoreOptions = {}): Promise<OciArchiveStore> {
    const archive = await openArchive(path, options);
    try {
      await OciArchiveStore.check(archive);
    } catch (error) {
      await archive.source.close();
      throw error;
    }
    return new OciArchiveStore(archive, options);
  }

  /** Throws unless the archive holds a supported `oci-layout` file. */
  protected static async check({ index, source }: OpenedArchive): Promise<void> {
    const where = `${source.archive}: oci-layout`;
    let header: ResolvedEntry | undefined;
    try {
      header = index.find("oci-layout");
    } catch (error) {
      if (!(error instanceof RociError && error.code === "NOT_FOUND")) throw error;
    }
    if (header === undefined) {
      const docker = index.get("manifest.json") !== undefined;
      throw new RociError(
        "INVALID_LAYOUT",
        `archive ${source.archive}: no oci-layout entry, so not an OCI image layout archive`,
        {
          subject: source.archive,
          hint: docker
            ? "it has a manifest.json: read it as a docker save archive with docker-archive:PATH"
            : "an OCI archive is a tar of a layout: oci-layout, index.json and blobs/ at its root",
        },
      );
    }
    const parsed = parseLayoutHeader(await readEntry(index, header, 64 * 1024, where), where);
    if (!supportedLayoutVersion.test(parsed.imageLayoutVersion)) {
      throw new RociError(
        "INVALID_LAYOUT",
        `archive ${source.archive}: imageLayoutVersion "${parsed.imageLayoutVersion}" is not supported (expected 1.0.0)`,
        { subject: source.archive },
      );
    }
  }

  /** The index of the archive's entries. */
  get tarIndex(): TarIndex {
    return this.#archive.index;
  }

  /** Removes the temp file of a compressed archive (also removed at process exit). */
  close(): Promise<void> {
    return this.#archive.source.close();
  }

  /** `blobs/<alg>/<hex>` of a verifiable digest; anything else never becomes an entry name. */
  blobName(digest: string): string {
    const { algorithm, encoded } = requireVerifiable(digest);
    return `blobs/${algorithm}/${encoded}`;
  }

  /** The parsed `index.json` (4 MiB cap). */
  async index(): Promise<ImageIndex> {
    const where = `${this.location}: index.json`;
    let entry: ResolvedEntry | undefined;
    try {
      entry = this.tarIndex.find("index.json");
    } catch (error) {
      if (!(error instanceof RociError && error.code === "NOT_FOUND")) throw error;
      throw new RociError("INVALID_LAYOUT", error.message, { subject: this.location, cause: error });
    }
    if (entry === undefined) {
      throw new RociError("INVALID_LAYOUT", `archive ${this.location}: no index.json`, {
        subject: this.location,
      });
    }
    return parseIndex(await readEntry(this.tarIndex, entry, defaultDocumentLimit, where), where).value;
  }

  async tags(): Promise<string[]> {
    return tagsOf((await this.index()).manifests);
  }

  /** DESIGN.md's resolution rules (see layout-resolution.ts). */
  async resolve(selector: Selector): Promise<Descriptor> {
    return resolveInLayout(this, selector, this.#onWarning);
  }

  /** The descriptor of a manifest or index known only by digest: size from the entry, type from its JSON. */
  async describeBlob(digest: Digest): Promise<Descriptor> {
    const where = `blob ${digest} in ${this.location}`;
    const raw = await readEntry(this.tarIndex, this.#blob(digest), defaultDocumentLimit, where);
    return describeDocument(raw, digest, where);
  }

  /** The descriptor of any blob known only by digest, its size taken from the entry (content still verified). */
  async describeFile(digest: Digest): Promise<Descriptor> {
    return { mediaType: "application/octet-stream", digest, size: this.#blob(digest).size };
  }

  /** Where a blob's bytes are, for engines that copy byte ranges (verify what you copy). */
  async blobEntry(digest: Digest): Promise<BlobEntry> {
    const resolved = this.#blob(digest);
    return { path: this.tarIndex.file, offset: resolved.dataOffset, size: resolved.size };
  }

  /** Whether the blob is present (a dangling link is absent; an unsafe one throws). */
  async exists(descriptor: Descriptor): Promise<boolean> {
    try {
      return this.tarIndex.find(this.blobName(descriptor.digest)) !== undefined;
    } catch (error) {
      if (error instanceof RociError && error.code === "NOT_FOUND") return false;
      throw error;
    }
  }

  async fetch(descriptor: Descriptor): Promise<Readable> {
    const resolved = this.#blob(descriptor.digest);
    const where = `blob ${descriptor.digest} in ${this.location}`;
    // Fail before streaming when the size alone gives the blob away.
    checkSize(descriptor, resolved.size, where);
    return streamVerified(this.tarIndex, resolved.dataOffset, resolved.size, descriptor, where);
  }

  /** Every entry under `blobs/`, as digests where the name is one (others are reported as strays). */
  async listBlobs(): Promise<{ digests: Digest[]; strays: string[] }> {
    const digests: Digest[] = [];
    const strays: string[] = [];
    for (const name of this.tarIndex.list("blobs")) {
      const slash = name.indexOf("/");
      const candidate = slash > 0 && slash === name.lastIndexOf("/") ? name.replace("/", ":") : undefined;
      if (candidate !== undefined && isDigest(candidate) && parseDigest(candidate).verifiable) {
        digests.push(candidate as Digest);
      } else {
        strays.push(`blobs/${name}`);
      }
    }
    return { digests, strays };
  }

  /** The entry of a blob, or BLOB_MISSING naming the archive (and the broken link, if one is why). */
  #blob(digest: string): ResolvedEntry {
    let found: ResolvedEntry | undefined;
    try {
      found = this.tarIndex.find(this.blobName(digest));
    } catch (error) {
      if (!(error instanceof RociError && error.code === "NOT_FOUND")) throw error;
      throw new RociError(
        "BLOB_MISSING",
        `blob ${digest}: missing from archive ${this.location} (${error.message})`,
        {
          subject: digest,
          cause: error,
        },
      );
    }
    if (found === undefined) {
      throw new RociError("BLOB_MISSING", `blob ${digest}: missing from archive ${this.location}`, {
        subject: digest,
      });
    }
    return found;
  }
}
