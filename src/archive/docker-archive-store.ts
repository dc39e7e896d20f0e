/**
 * A `docker save` tar read through its `manifest.json` (SPEC-CHECKLIST §5), in place: the legacy
 * layout (Docker ≤ 24: `<id>/layer.tar`; skopeo: `<diffid>.tar` with `<id>/layer.tar` symlinks), the
 * Docker ≥ 25 hybrid (`blobs/sha256/…` paths) and containerd-store exports (compressed layers).
 * `repositories` and index.json are ignored; read a hybrid as an OCI layout with OciArchiveStore.
 *
 * A docker save archive has no manifests, so one Docker schema 2 manifest is SYNTHESISED per
 * manifest.json entry, with stable digests: the config is the Config file (digest = sha256 of its
 * bytes); a layer that is a plain tar is named by its diff_id (checked when fetched) with the media
 * type of an uncompressed Docker layer; a gzip or zstd layer gets the matching Docker media type and
 * the digest in its name when it is `blobs/sha256/<hex>` (checked when fetched), else the sha256 of
 * its bytes (hashed once). The manifest bytes are compact JSON with a fixed key order, served as a
 * blob under their own digest.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { type Digest, isDigest, shortDigest } from "../digest/digest.ts";
import { checkSize, digestOf, VerifyingStream } from "../digest/hash.ts";
import { RociError } from "../errors.ts";
import { type Compression, layerMediaType, sniffCompression } from "../layer/compression.ts";
import { formatDockerReference, tryParseDockerReference } from "../reference/docker-reference.ts";
import { Annotation } from "../spec/annotations.ts";
import {
  type Descriptor,
  defaultDocumentLimit,
  type ImageIndex,
  parseConfig,
  parseJsonBytes,
} from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import { array, object, ShapeError, string } from "../spec/validate.ts";
import type { BlobEntry, ImageStore, Selector } from "../store/store.ts";
import { type OpenedArchive, openArchive, readEntry, readRange, streamVerified } from "./archive-source.ts";
import type { ArchiveStoreOptions } from "./oci-archive-store.ts";
import type { ResolvedEntry, TarIndex } from "./tar-index.ts";

/** One entry of `manifest.json`, as Docker and skopeo write it. */
export interface DockerSaveEntry {
  Config: string;
  /** Familiar or full references (`busybox:latest`, `docker.io/lab/x:tag`); may be empty. */
  RepoTags: string[];
  Layers: string[];
}

/** The image one manifest.json entry describes, with its synthesised manifest. */
export interface DockerSavedImage {
  /** Its 0-based position in manifest.json (what `@N` selects). */
  readonly position: number;
  readonly repoTags: readonly string[];
  /** The synthesised Docker schema 2 manifest. */
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

type Blob =
  | { kind: "manifest"; descriptor: Descriptor; bytes: Uint8Array }
  | { kind: "entry"; descriptor: Descriptor; entry: ResolvedEntry };

const hexBlobName = /^blobs\/sha256\/([a-f0-9]{64})$/;

export class DockerArchiveStore implements ImageStore {
  /** The archive path, as given. */
  readonly location: string;
  readonly #archive: OpenedArchive;
  readonly #entries: readonly DockerSaveEntry[];
  readonly #onWarning: (message: string) => void;
  readonly #images = new Map<number, Promise<DockerSavedImage>>();
  readonly #blobs = new Map<string, Blob>();
  /** Digests of compressed layer files hashed so far, by data offset (shared between images). */
  readonly #hashed = new Map<number, Promise<Digest>>();

  protected constructor(
    archive: OpenedArchive,
    entries: readonly DockerSaveEntry[],
    options: ArchiveStoreOptions,
  ) {
    this.location = archive.source.archive;
    this.#archive = archive;
    this.#entries = entries;
    this.#onWarning = options.onWarning ?? (() => {});
  }

  /** Opens (decompressing if needed) and indexes an archive, and reads its manifest.json. */
  static async open(path: string, options: ArchiveStoreOptions = {}): Promise<DockerArchiveStore> {
    const archive = await openArchive(path, options);
    try {
      const entries = await readManifestJson(archive);
      return new DockerArchiveStore(archive, entries, options);
    } catch (error) {
      await archive.source.close();
      throw error;
    }
  }

  /** The index of the archive's entries. */
  get tarIndex(): TarIndex {
    return this.#archive.index;
  }

  /** manifest.json, validated. */
  get entries(): readonly DockerSaveEntry[] {
    return this.#entries;
  }

  /** Removes the temp file of a compressed archive (also removed at process exit). */
  close(): Promise<void> {
    return this.#archive.source.close();
  }

  /** Every RepoTag, as written, in manifest.json order, without repeats. */
  async tags(): Promise<string[]> {
    return [...new Set(this.#entries.flatMap((entry) => entry.RepoTags))];
  }

  /** The image of manifest.json entry `position`, its manifest synthesised once. */
  image(position: number): Promise<DockerSavedImage> {
    const entry = this.#entries[position];
    if (entry === undefined) {
      return Promise.reject(this.#outOfRange(position));
    }
    let image = this.#images.get(position);
    if (image === undefined) {
      image = this.#synthesise(position, entry);
      this.#images.set(position, image);
    }
    return image;
  }

  /**
   * The archive's images as an image index, the way Docker ≥ 25 writes its index.json: one entry
   * per name (containerd name and tag), an untagged image once without names.
   */
  async index(): Promise<ImageIndex> {
    const manifests: Descriptor[] = [];
    for (const image of await this.images()) {
      if (image.repoTags.length === 0) manifests.push(image.manifest);
      for (const repoTag of image.repoTags) {
        const reference = tryParseDockerReference(repoTag);
        const annotations: Record<string, string> = reference.ok
          ? {
              [Annotation.containerdName]: formatDockerReference(reference.ref),
              [Annotation.refName]: reference.ref.tag ?? "latest",
            }
          : { [Annotation.refName]: repoTag };
        manifests.push({ ...image.manifest, annotations });
      }
    }
    return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
  }

  /** Every image, in manifest.json order. */
  async images(): Promise<DockerSavedImage[]> {
    const images: DockerSavedImage[] = [];
    for (let position = 0; position < this.#entries.length; position++)
      images.push(await this.image(position));
    return images;
  }

  /**
   * The synthesised manifest of one entry: by docker reference (`lab/debian:bookworm` ≡
   * `docker.io/lab/debian:bookworm`; no tag means `latest`) matched against RepoTags, by 0-based
   * position (`@N`), or, with neither, the only entry.
   */
  async resolveEntry(which: { name?: string | undefined; index?: number | undefined }): Promise<Descriptor> {
    return (await this.image(this.#position(which))).manifest;
  }

  /** The selector's tag is a docker reference (`name[:tag]`); a digest names a synthesised manifest. */
  async resolve(selector: Selector): Promise<Descriptor> {
    if (selector.digest === undefined) return this.resolveEntry({ name: selector.tag });
    const descriptor = await this.describeBlob(selector.digest);
    if (selector.tag !== undefined) {
      try {
        const tagged = await this.resolveEntry({ name: selector.tag });
        if (tagged.digest !== descriptor.digest) {
          this.#onWarning(
            `"${selector.tag}" names ${shortDigest(tagged.digest)} in ${this.location}; using the pinned ${shortDigest(descriptor.digest)}`,
          );
        }
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        this.#onWarning(`"${selector.tag}" could not be checked against the pinned digest: ${reason}`);
      }
    }
    return descriptor;
  }

  /** The descriptor of a synthesised manifest known only by digest. */
  async describeBlob(digest: Digest): Promise<Descriptor> {
    const blob = await this.#find(digest);
    if (blob === undefined) throw this.#missing(digest);
    if (blob.kind !== "manifest") {
      throw new RociError(
        "INVALID_DOCUMENT",
        `blob ${digest} in ${this.location}: not an image manifest (it is a ${blob.descriptor.mediaType})`,
        {
          subject: digest,
          hint: "a digest in a reference must name a manifest; use `roci blob` for other blobs",
        },
      );
    }
    return blob.descriptor;
  }

  /** The descriptor of any blob of the archive (manifest, config or layer) known only by digest. */
  async describeFile(digest: Digest): Promise<Descriptor> {
    const blob = await this.#find(digest);
    if (blob === undefined) throw this.#missing(digest);
    return blob.descriptor;
  }

  /**
   * Where a config's or layer's bytes are, for engines that copy byte ranges (verify what you
   * copy); undefined for a synthesised manifest, which lives in memory (use fetch).
   */
  async blobEntry(digest: Digest): Promise<BlobEntry | undefined> {
    const blob = await this.#find(digest);
    if (blob === undefined) throw this.#missing(digest);
    if (blob.kind === "manifest") return undefined;
    return { path: this.tarIndex.file, offset: blob.entry.dataOffset, size: blob.entry.size };
  }

  async exists(descriptor: Descriptor): Promise<boolean> {
    return (await this.#find(descriptor.digest)) !== undefined;
  }

  async fetch(descriptor: Descriptor): Promise<Readable> {
    const blob = await this.#find(descriptor.digest);
    if (blob === undefined) throw this.#missing(descriptor.digest);
    const where = `blob ${descriptor.digest} in ${this.location}`;
    const size = blob.kind === "manifest" ? blob.bytes.byteLength : blob.entry.size;
    checkSize(descriptor, size, where);
    if (blob.kind === "manifest") {
      const verifier = new VerifyingStream(descriptor, where);
      Readable.from([Buffer.from(blob.bytes)]).pipe(verifier);
      return verifier;
    }
    return streamVerified(this.tarIndex, blob.entry.dataOffset, blob.entry.size, descriptor, where);
  }

  /** Every blob the synthesised images are made of (manifests, configs, layers). */
  async listBlobs(): Promise<{ digests: Digest[]; strays: string[] }> {
    await this.images();
    return { digests: [...this.#blobs.keys()] as Digest[], strays: [] };
  }

  /** Looks a digest up among the images synthesised so far, synthesising the others as needed. */
  async #find(digest: string): Promise<Blob | undefined> {
    const known = this.#blobs.get(digest);
    if (known !== undefined || !isDigest(digest)) return known;
    for (let position = 0; position < this.#entries.length; position++) {
      await this.image(position);
      const found = this.#blobs.get(digest);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  #missing(digest: string): RociError {
    return new RociError("BLOB_MISSING", `blob ${digest}: not in docker archive ${this.location}`, {
      subject: digest,
      hint: "a docker save archive holds its configs and layers, and roci's synthesised manifests",
    });
  }

  #outOfRange(position: number): RociError {
    return new RociError(
      "TAG_NOT_FOUND",
      `${this.location}: no image @${position}: the archive has ${this.#entries.length} image${this.#entries.length === 1 ? "" : "s"} (${this.#describeEntries()})`,
      { subject: `@${position}`, hint: "@N counts manifest.json entries from 0" },
    );
  }

  #describeEntries(): string {
    if (this.#entries.length === 0) return "manifest.json is empty";
    return this.#entries
      .map(
        (entry, position) =>
          `@${position}: ${entry.RepoTags.length > 0 ? entry.RepoTags.join(", ") : "untagged"}`,
      )
      .join("; ");
  }

  #position(which: { name?: string | undefined; index?: number | undefined }): number {
    if (which.name !== undefined && which.index !== undefined) {
      throw new RociError("USAGE", `${this.location}: name an image by NAME:TAG or by @N, not both`, {
        subject: this.location,
      });
    }
    if (which.index !== undefined) {
      if (!Number.isSafeInteger(which.index) || which.index < 0 || which.index >= this.#entries.length) {
        throw this.#outOfRange(which.index);
      }
      return which.index;
    }
    if (which.name === undefined) {
      if (this.#entries.length === 1) return 0;
      throw new RociError(
        "TAG_NOT_FOUND",
        this.#entries.length === 0
          ? `${this.location}: the archive holds no images (manifest.json is empty)`
          : `${this.location}: no image named and ${this.#entries.length} to choose from (${this.#describeEntries()})`,
        {
          subject: this.location,
          hint: "pick one with docker-archive:PATH:NAME:TAG or docker-archive:PATH:@N",
        },
      );
    }
    const wanted = normaliseName(which.name);
    if (wanted === undefined) {
      throw new RociError(
        "INVALID_REFERENCE",
        `${this.location}: "${which.name}" is not a docker reference NAME[:TAG]`,
        { subject: which.name, hint: "e.g. lab/debian:bookworm or docker.io/library/alpine:3.20" },
      );
    }
    const matches = this.#entries.flatMap((entry, position) =>
      entry.RepoTags.some((tag) => (normaliseName(tag) ?? tag) === wanted) ? [position] : [],
    );
    if (matches.length > 1) {
      throw new RociError(
        "AMBIGUOUS_TAG",
        `${this.location}: "${which.name}" is a RepoTag of ${matches.length} images: ${matches.map((p) => `@${p}`).join(", ")}`,
        { subject: which.name, hint: "pick one with docker-archive:PATH:@N" },
      );
    }
    const [match] = matches;
    if (match !== undefined) return match;
    throw new RociError(
      "TAG_NOT_FOUND",
      `${this.location}: no image named "${which.name}" (${this.#describeEntries()})`,
      { subject: which.name, hint: "name one of its RepoTags, or pick an image with :@N" },
    );
  }

  async #synthesise(position: number, entry: DockerSaveEntry): Promise<DockerSavedImage> {
    const index = this.tarIndex;
    const label = `manifest.json[${position}]`;
    const configEntry = this.#lookup(entry.Config, `${label}.Config`);
    const configWhere = `${this.location}: ${entry.Config}`;
    const configBytes = await readEntry(index, configEntry, defaultDocumentLimit, configWhere);
    const config = parseConfig(configBytes, configWhere).value;
    const configDescriptor: Descriptor = {
      mediaType: MediaType.dockerConfig,
      size: configBytes.byteLength,
      digest: digestOf(configBytes),
    };
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== entry.Layers.length) {
      const tags = entry.RepoTags.length > 0 ? ` (${entry.RepoTags.join(", ")})` : "";
      throw new RociError(
        "INVALID_DOCUMENT",
        `${this.location}: ${label}${tags} lists ${entry.Layers.length} layers, but its config ${entry.Config} has ${diffIds.length} diff_ids`,
        { subject: this.location, hint: "the archive is inconsistent; save the image again" },
      );
    }
    const layers: Array<{ descriptor: Descriptor; entry: ResolvedEntry }> = [];
    for (const [i, path] of entry.Layers.entries()) {
      const layerEntry = this.#lookup(path, `${label}.Layers[${i}]`);
      const head = await readRange(index, layerEntry.dataOffset, Math.min(4, layerEntry.size));
      const compression: Compression = sniffCompression(head);
      let digest: string;
      if (compression === "none") {
        digest = diffIds[i] as string;
      } else {
        const named = hexBlobName.exec(layerEntry.name);
        digest = named ? `sha256:${named[1]}` : await this.#hash(layerEntry);
      }
      layers.push({
        descriptor: { mediaType: layerMediaType(compression, "docker"), size: layerEntry.size, digest },
        entry: layerEntry,
      });
    }
    // Compact JSON, keys in a fixed order (descriptors as Docker's distribution writes them).
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: configDescriptor,
        layers: layers.map((layer) => layer.descriptor),
      }),
      "utf8",
    );
    const manifest: Descriptor = {
      mediaType: MediaType.dockerManifest,
      digest: digestOf(manifestBytes),
      size: manifestBytes.byteLength,
    };
    this.#remember({ kind: "manifest", descriptor: manifest, bytes: manifestBytes });
    this.#remember({ kind: "entry", descriptor: configDescriptor, entry: configEntry });
    for (const layer of layers) this.#remember({ kind: "entry", ...layer });
    return {
      position,
      repoTags: entry.RepoTags,
      manifest,
      config: configDescriptor,
      layers: layers.map((layer) => layer.descriptor),
    };
  }

  #remember(blob: Blob): void {
    if (!this.#blobs.has(blob.descriptor.digest)) this.#blobs.set(blob.descriptor.digest, blob);
  }

  /** A file manifest.json names; BLOB_MISSING naming the archive and the field when it is not there. */
  #lookup(path: string, field: string): ResolvedEntry {
    let found: ResolvedEntry | undefined;
    try {
      found = this.tarIndex.find(path);
    } catch (error) {
      if (!(error instanceof RociError && error.code === "NOT_FOUND")) throw error;
      throw new RociError("BLOB_MISSING", `${this.location}: ${field} names ${path}: ${error.message}`, {
        subject: path,
        cause: error,
      });
    }
    if (found === undefined) {
      throw new RociError(
        "BLOB_MISSING",
        `${this.location}: ${field} names ${path}, which is not in the archive`,
        {
          subject: path,
        },
      );
    }
    return found;
  }

  /** The sha256 of an entry's bytes, hashed once. */
  #hash(entry: ResolvedEntry): Promise<Digest> {
    let digest = this.#hashed.get(entry.dataOffset);
    if (digest === undefined) {
      digest = hashRange(this.tarIndex, entry.dataOffset, entry.size);
      this.#hashed.set(entry.dataOffset, digest);
    }
    return digest;
  }
}

async function hashRange(index: TarIndex, offset: number, size: number): Promise<Digest> {
  const hash = createHash("sha256");
  if (size > 0) {
    for await (const chunk of createReadStream(index.file, {
      start: offset,
      end: offset + size - 1,
      highWaterMark: 1024 * 1024,
    })) {
      hash.update(chunk as Buffer);
    }
  }
  return `sha256:${hash.digest("hex")}` as Digest;
}

/** `domain/path:tag` of a docker reference (`latest` when untagged); undefined when it is not one. */
function normaliseName(name: string): string | undefined {
  const parsed = tryParseDockerReference(name);
  if (!parsed.ok || parsed.ref.digest !== undefined) return undefined;
  return formatDockerReference({ ...parsed.ref, tag: parsed.ref.tag ?? "latest" });
}

/** Reads and validates manifest.json: an array of {Config, RepoTags, Layers}. */
async function readManifestJson({ index, source }: OpenedArchive): Promise<DockerSaveEntry[]> {
  const archive = source.archive;
  const where = `${archive}: manifest.json`;
  let entry: ResolvedEntry | undefined;
  try {
    entry = index.find("manifest.json");
  } catch (error) {
    if (!(error instanceof RociError && error.code === "NOT_FOUND")) throw error;
  }
  if (entry === undefined) {
    const oci = index.get("oci-layout") !== undefined;
    throw new RociError(
      "INVALID_LAYOUT",
      `archive ${archive}: no manifest.json, so not a docker save archive`,
      {
        subject: archive,
        hint: oci
          ? "it has an oci-layout: read it as an OCI archive with oci-archive:PATH"
          : "a docker save archive has manifest.json at its root",
      },
    );
  }
  const json = parseJsonBytes(await readEntry(index, entry, defaultDocumentLimit, where), where);
  if (!Array.isArray(json)) {
    throw new RociError("INVALID_DOCUMENT", `${where}: expected an array of images, found ${kindOf(json)}`, {
      subject: archive,
      hint: "docker save writes manifest.json as a JSON array of {Config, RepoTags, Layers}",
    });
  }
  return json.map((item, position) => {
    try {
      const record = object(item, "");
      const config = string(record, "Config", "");
      const layers = array(record, "Layers", "").map((layer, i) => {
        if (typeof layer !== "string") throw new ShapeError(`Layers.${i}`, "expected a string");
        return layer;
      });
      const rawTags = record.RepoTags ?? [];
      if (!Array.isArray(rawTags)) throw new ShapeError("RepoTags", "expected an array of strings");
      const repoTags = rawTags.map((tag, i) => {
        if (typeof tag !== "string") throw new ShapeError(`RepoTags.${i}`, "expected a string");
        return tag;
      });
      return { Config: config, RepoTags: repoTags, Layers: layers };
    } catch (error) {
      if (!(error instanceof ShapeError)) throw error;
      throw new RociError("INVALID_DOCUMENT", `${where}: entry ${position} is not valid: ${error.message}`, {
        subject: archive,
      });
    }
  });
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}
