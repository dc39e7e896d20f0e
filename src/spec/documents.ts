/**
 * Typed OCI documents (descriptor, index, manifest, config, platform) and their validation.
 * Parsing keeps the exact bytes beside the value, because digests are of bytes, never of a
 * re-serialisation. Unknown fields and unknown media types are carried, not rejected (IL-7, MF-3):
 * validation checks values in place, so the objects keep every field the types do not name.
 */
import { isDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import { isIndexType, isManifestType, isSchema1Type, MediaType } from "./media-types.ts";
import {
  array,
  elementPath,
  type JsonObject,
  object,
  optionalRecord,
  optionalString,
  optionalStringArray,
  ShapeError,
  string,
} from "./validate.ts";

/** JSON documents larger than this are refused before parsing, as registries and containers/image do. */
export const defaultDocumentLimit = 4 * 1024 * 1024;

export interface Platform {
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  features?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string;
  artifactType?: string;
  platform?: Platform;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** The runtime settings of an image config; Docker writes `null` for empty lists and maps. */
export interface ImageSettings {
  User?: string;
  ExposedPorts?: Record<string, object> | null;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object> | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  [field: string]: unknown;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  created?: string;
  author?: string;
  config?: ImageSettings | null;
  rootfs: { type: string; diff_ids: string[] };
  history?: JsonObject[];
  [field: string]: unknown;
}

export interface LayoutHeader {
  imageLayoutVersion: string;
}

/** A parsed document with the exact bytes it came from. */
export interface Parsed<T> {
  readonly raw: Uint8Array;
  readonly value: T;
}

const mediaTypeGrammar = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** Media types already seen valid: a big index.json repeats the same few thousands of times. */
const validMediaTypes = new Set<string>();

function isValidMediaType(mediaType: string): boolean {
  if (validMediaTypes.has(mediaType)) return true;
  if (!mediaTypeGrammar.test(mediaType)) return false;
  if (validMediaTypes.size < 1024) validMediaTypes.add(mediaType);
  return true;
}

function checkPlatform(value: unknown, path: string): void {
  const platform = object(value, path);
  string(platform, "architecture", path);
  string(platform, "os", path);
  optionalString(platform, "os.version", path);
  optionalStringArray(platform, "os.features", path);
  optionalString(platform, "variant", path);
  optionalStringArray(platform, "features", path);
}

function checkDescriptor(value: unknown, path: string): Descriptor {
  const descriptor = object(value, path);
  if (!isValidMediaType(string(descriptor, "mediaType", path))) {
    throw new ShapeError(`${path ? `${path}.` : ""}mediaType`, "not a valid media type");
  }
  if (!isDigest(string(descriptor, "digest", path))) {
    throw new ShapeError(`${path ? `${path}.` : ""}digest`, "not a valid digest");
  }
  const size = descriptor.size;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new ShapeError(`${path ? `${path}.` : ""}size`, "expected a non-negative integer");
  }
  optionalStringArray(descriptor, "urls", path);
  optionalRecord(descriptor, "annotations", path, { stringValues: true });
  optionalString(descriptor, "data", path);
  optionalString(descriptor, "artifactType", path);
  if (descriptor.platform !== undefined)
    checkPlatform(descriptor.platform, `${path ? `${path}.` : ""}platform`);
  return descriptor as unknown as Descriptor;
}

function checkDescriptors(parent: JsonObject, key: string): Descriptor[] {
  const items = array(parent, key, "");
  items.forEach((item, index) => {
    checkDescriptor(item, elementPath("", key, index));
  });
  return items as Descriptor[];
}

function checkCommon(document: JsonObject): void {
  if (document.schemaVersion !== 2) throw new ShapeError("schemaVersion", "expected 2");
  optionalString(document, "mediaType", "");
  optionalString(document, "artifactType", "");
  if (document.subject !== undefined) checkDescriptor(document.subject, "subject");
  optionalRecord(document, "annotations", "", { stringValues: true });
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Parses JSON bytes, refusing oversized input before any parsing happens. */
export function parseJsonBytes(raw: Uint8Array, where: string, limit = defaultDocumentLimit): unknown {
  if (raw.byteLength > limit) {
    throw new RociError(
      "DOCUMENT_TOO_LARGE",
      `${where}: ${raw.byteLength} bytes is over the ${limit}-byte limit for JSON documents`,
      { subject: where },
    );
  }
  let text: string;
  try {
    text = decoder.decode(raw);
  } catch (cause) {
    throw new RociError("INVALID_DOCUMENT", `${where}: not valid UTF-8`, { cause, subject: where });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new RociError("INVALID_DOCUMENT", `${where}: not valid JSON (${reason})`, {
      cause,
      subject: where,
    });
  }
}

/** Runs a shape check, turning its failure into INVALID_DOCUMENT naming the document and the field. */
function validated<T>(kind: string, where: string, check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof ShapeError)) throw error;
    throw new RociError("INVALID_DOCUMENT", `${where}: not a valid ${kind}: ${error.message}`, {
      subject: where,
    });
  }
}

export function parseIndex(raw: Uint8Array, where: string, limit?: number): Parsed<ImageIndex> {
  const json = parseJsonBytes(raw, where, limit);
  const value = validated("image index", where, () => {
    const document = object(json, "");
    checkCommon(document);
    if (document.mediaType !== undefined && !isIndexType(document.mediaType as string)) {
      throw new ShapeError("mediaType", `${document.mediaType} is not an index media type`);
    }
    checkDescriptors(document, "manifests");
    return document as ImageIndex;
  });
  return { raw, value };
}

export function parseManifest(raw: Uint8Array, where: string, limit?: number): Parsed<ImageManifest> {
  const json = parseJsonBytes(raw, where, limit);
  const mediaType = (json as { mediaType?: unknown } | null)?.mediaType;
  if (typeof mediaType === "string" && isSchema1Type(mediaType)) {
    throw new RociError("INVALID_DOCUMENT", `${where}: Docker schema 1 manifests are not supported`, {
      subject: where,
      hint: "schema 1 is deprecated; convert the image with a current tool",
    });
  }
  const value = validated("image manifest", where, () => {
    const document = object(json, "");
    checkCommon(document);
    if (document.mediaType !== undefined && !isManifestType(document.mediaType as string)) {
      throw new ShapeError("mediaType", `${document.mediaType} is not a manifest media type`);
    }
    checkDescriptor(document.config, "config");
    checkDescriptors(document, "layers");
    return document as ImageManifest;
  });
  return { raw, value };
}

export function parseConfig(raw: Uint8Array, where: string, limit?: number): Parsed<ImageConfig> {
  const json = parseJsonBytes(raw, where, limit);
  const value = validated("image config", where, () => {
    const document = object(json, "");
    checkPlatform(document, "");
    optionalString(document, "created", "");
    optionalString(document, "author", "");
    if (document.config !== undefined && document.config !== null) {
      const settings = object(document.config, "config");
      optionalString(settings, "User", "config");
      optionalString(settings, "WorkingDir", "config");
      optionalString(settings, "StopSignal", "config");
      for (const key of ["Env", "Entrypoint", "Cmd"]) optionalStringArray(settings, key, "config", true);
      optionalRecord(settings, "ExposedPorts", "config", { nullable: true });
      optionalRecord(settings, "Volumes", "config", { nullable: true });
      optionalRecord(settings, "Labels", "config", { nullable: true, stringValues: true });
    }
    const rootfs = object(document.rootfs, "rootfs");
    string(rootfs, "type", "rootfs");
    array(rootfs, "diff_ids", "rootfs").forEach((diffId, index) => {
      if (typeof diffId !== "string" || !isDigest(diffId)) {
        throw new ShapeError(elementPath("rootfs", "diff_ids", index), "not a valid digest");
      }
    });
    if (document.history !== undefined) {
      array(document, "history", "").forEach((entry, index) => {
        object(entry, elementPath("", "history", index));
      });
    }
    return document as ImageConfig;
  });
  return { raw, value };
}

export function parseLayoutHeader(raw: Uint8Array, where: string): LayoutHeader {
  const json = parseJsonBytes(raw, where, 64 * 1024);
  return validated("oci-layout file", where, () => {
    const document = object(json, "");
    string(document, "imageLayoutVersion", "");
    return document as unknown as LayoutHeader;
  });
}

/**
 * What a JSON blob is, when only its bytes are known (a digest given without a descriptor): its own
 * `mediaType` field if it names an index or manifest, else its shape (`manifests` → index;
 * `config` + `layers` → manifest), as buildkit's oci-layout resolver does.
 */
export function sniffMediaType(json: unknown): string | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const record = json as JsonObject;
  const declared = typeof record.mediaType === "string" ? record.mediaType : undefined;
  if (declared && (isIndexType(declared) || isManifestType(declared) || isSchema1Type(declared)))
    return declared;
  if (Array.isArray(record.manifests)) return MediaType.ociIndex;
  if (typeof record.config === "object" && Array.isArray(record.layers)) return MediaType.ociManifest;
  return declared;
}
