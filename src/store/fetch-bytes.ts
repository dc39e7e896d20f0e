import { buffer } from "node:stream/consumers";
import { shortDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import { type Descriptor, defaultDocumentLimit } from "../spec/documents.ts";
import type { Fetcher } from "./store.ts";

/**
 * Reads a small blob (a manifest, index or config) into memory, verified. The size is checked
 * against `limit` before a byte is read, so a descriptor cannot make roci buffer a huge blob.
 */
export async function fetchBytes(
  fetcher: Fetcher,
  descriptor: Descriptor,
  limit = defaultDocumentLimit,
): Promise<Uint8Array> {
  if (descriptor.size > limit) {
    throw new RociError(
      "DOCUMENT_TOO_LARGE",
      `blob ${shortDigest(descriptor.digest)}: ${descriptor.size} bytes is over the ${limit}-byte limit for JSON documents`,
      { subject: descriptor.digest },
    );
  }
  return new Uint8Array(await buffer(await fetcher.fetch(descriptor)));
}
