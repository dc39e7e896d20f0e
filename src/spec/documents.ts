/**
 * Typed OCI documents (descriptor, index, manifest, config, platform) and their validation.
 * Parsing keeps the exact bytes beside the value, because digests are of bytes, never of a
 * re-serialisation. Unknown fields and unknown media types are carried, not rejected (IL-7, MF-3).
 */
import * as v from "valibot";
import { parseDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import { isIndexType, isManifestType, isSchema1Type } from "./media-types.ts";

/** JSON documents larger than this are refused before parsing, as registries and containers/image do. */
export const defaultDocumentLimit = 4 * 1024 * 1024;

const mediaTypeGrammar = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

const DigestSchema = v.pipe(
  v.string(),
  v.check((value) => {
    try {
      parseDigest(value);
      return true;
    } catch {
      return false;
    }
  }, "not a valid digest"),
);

const Annotations = v.record(v.string(), v.string());

const PlatformSchema = v.looseObject({
  architecture: v.string(),
  os: v.string(),
  "os.version": v.optional(v.string()),
  "os.features": v.optional(v.array(v.string())),
  variant: v.optional(v.string()),
  features: v.optional(v.array(v.string())),
});

const DescriptorSchema = v.looseObject({
  mediaType: v.pipe(v.string(), v.regex(mediaTypeGrammar, "not a valid media type")),
  digest: DigestSchema,
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  urls: v.optional(v.array(v.string())),
  annotations: v.optional(Annotations),
  data: v.optional(v.string()),
  artifactType: v.optional(v.string()),
  platform: v.optional(PlatformSchema),
});

const IndexSchema = v.looseObject({
  schemaVersion: v.literal(2),
  mediaType: v.optional(v.string()),
  artifactType: v.optional(v.string()),
  manifests: v.array(DescriptorSchema),
  subject: v.optional(DescriptorSchema),
  annotations: v.optional(Annotations),
});

const ManifestSchema = v.looseObject({
  schemaVersion: v.literal(2),
  mediaType: v.optional(v.string()),
  artifactType: v.optional(v.string()),
  config: DescriptorSchema,
  layers: v.array(DescriptorSchema),
  subject: v.optional(DescriptorSchema),
  annotations: v.optional(Annotations),
});

const ConfigSchema = v.looseObject({
  architecture: v.string(),
  os: v.string(),
  "os.version": v.optional(v.string()),
  "os.features": v.optional(v.array(v.string())),
  variant: v.optional(v.string()),
  created: v.optional(v.string()),
  author: v.optional(v.string()),
  config: v.optional(
    v.nullish(
      v.looseObject({
        User: v.optional(v.string()),
        ExposedPorts: v.optional(v.nullish(v.record(v.string(), v.unknown()))),
        Env: v.optional(v.nullish(v.array(v.string()))),
        Entrypoint: v.optional(v.nullish(v.array(v.string()))),
        Cmd: v.optional(v.nullish(v.array(v.string()))),
        Volumes: v.optional(v.nullish(v.record(v.string(), v.unknown()))),
        WorkingDir: v.optional(v.string()),
        Labels: v.optional(v.nullish(v.record(v.string(), v.string()))),
        StopSignal: v.optional(v.string()),
      }),
    ),
  ),
  rootfs: v.looseObject({ type: v.string(), diff_ids: v.array(DigestSchema) }),
  history: v.optional(v.array(v.looseObject({}))),
});

const LayoutHeaderSchema = v.looseObject({ imageLayoutVersion: v.string() });

export type Platform = v.InferOutput<typeof PlatformSchema>;
export type Descriptor = v.InferOutput<typeof DescriptorSchema>;
export type ImageIndex = v.InferOutput<typeof IndexSchema>;
export type ImageManifest = v.InferOutput<typeof ManifestSchema>;
export type ImageConfig = v.InferOutput<typeof ConfigSchema>;
export type LayoutHeader = v.InferOutput<typeof LayoutHeaderSchema>;

/** A parsed document with the exact bytes it came from. */
export interface Parsed<T> {
  readonly raw: Uint8Array;
  readonly value: T;
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

function validate<S extends v.GenericSchema>(schema: S, value: unknown, where: string, kind: string) {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output as v.InferOutput<S>;
  const issue = result.issues[0];
  const path = v.getDotPath(issue);
  throw new RociError(
    "INVALID_DOCUMENT",
    `${where}: not a valid ${kind}${path ? ` at ${path}` : ""}: ${issue.message}`,
    { subject: where },
  );
}

export function validateDescriptor(value: unknown, where: string): Descriptor {
  return validate(DescriptorSchema, value, where, "descriptor");
}

export function parseIndex(raw: Uint8Array, where: string, limit?: number): Parsed<ImageIndex> {
  const value = validate(IndexSchema, parseJsonBytes(raw, where, limit), where, "image index");
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
  const value = validate(ManifestSchema, json, where, "image manifest");
  return { raw, value };
}

export function parseConfig(raw: Uint8Array, where: string, limit?: number): Parsed<ImageConfig> {
  const value = validate(ConfigSchema, parseJsonBytes(raw, where, limit), where, "image config");
  return { raw, value };
}

export function parseLayoutHeader(raw: Uint8Array, where: string): LayoutHeader {
  return validate(LayoutHeaderSchema, parseJsonBytes(raw, where, 64 * 1024), where, "oci-layout file");
}

/**
 * What a JSON blob is, when only its bytes are known (a digest given without a descriptor): its own
 * `mediaType` field if it names an index or manifest, else its shape (`manifests` → index;
 * `config` + `layers` → manifest), as buildkit's oci-layout resolver does.
 */
export function sniffMediaType(json: unknown): string | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const record = json as Record<string, unknown>;
  const declared = typeof record.mediaType === "string" ? record.mediaType : undefined;
  if (declared && (isIndexType(declared) || isManifestType(declared) || isSchema1Type(declared)))
    return declared;
  if (Array.isArray(record.manifests)) return "application/vnd.oci.image.index.v1+json";
  if (typeof record.config === "object" && Array.isArray(record.layers)) {
    return "application/vnd.oci.image.manifest.v1+json";
  }
  return declared;
}
