/**
 * The resolution rules of DESIGN.md for anything that holds an OCI layout — a directory or an
 * archive: a digest wins (its blob is read directly, index.json only to warn when a tag given
 * beside it disagrees); otherwise the tag, or the default, looked up in index.json.
 */
import { type Digest, shortDigest } from "../digest/digest.ts";
import { verifyBytes } from "../digest/hash.ts";
import { RociError } from "../errors.ts";
import { type Descriptor, type ImageIndex, parseJsonBytes, sniffMediaType } from "../spec/documents.ts";
import type { Selector } from "./store.ts";
import { lookupTag } from "./tag-lookup.ts";

export interface LayoutLike {
  readonly location: string;
  index(): Promise<ImageIndex>;
  describeBlob(digest: Digest): Promise<Descriptor>;
}

export async function resolveInLayout(
  layout: LayoutLike,
  selector: Selector,
  onWarning: (message: string) => void,
): Promise<Descriptor> {
  if (selector.digest === undefined)
    return lookupTag((await layout.index()).manifests, selector.tag, layout.location);
  const descriptor = await layout.describeBlob(selector.digest);
  if (selector.tag !== undefined) await warnIfTagDisagrees(layout, selector.tag, selector.digest, onWarning);
  return descriptor;
}

async function warnIfTagDisagrees(
  layout: LayoutLike,
  tag: string,
  digest: Digest,
  onWarning: (message: string) => void,
): Promise<void> {
  let tagged: Descriptor;
  try {
    tagged = lookupTag((await layout.index()).manifests, tag, layout.location);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    onWarning(`tag "${tag}" could not be checked against the pinned digest: ${reason}`);
    return;
  }
  if (tagged.digest !== digest) {
    onWarning(
      `tag "${tag}" names ${shortDigest(tagged.digest)} in ${layout.location}; using the pinned ${shortDigest(digest)}`,
    );
  }
}

/**
 * The descriptor of a manifest or index known only by digest, from its bytes: verified, and typed
 * by its own mediaType or its shape (as buildkit's oci-layout resolver does).
 */
export function describeDocument(raw: Uint8Array, digest: Digest, where: string): Descriptor {
  verifyBytes(raw, { digest, size: raw.byteLength }, where);
  let json: unknown;
  try {
    json = parseJsonBytes(raw, where);
  } catch {
    json = undefined;
  }
  const mediaType = sniffMediaType(json);
  if (mediaType === undefined) {
    throw new RociError("INVALID_DOCUMENT", `${where}: not an image manifest or index`, {
      subject: digest,
      hint: "a digest in a reference must name a manifest or an index; use `roci blob` for other blobs",
    });
  }
  return { mediaType, digest, size: raw.byteLength };
}
