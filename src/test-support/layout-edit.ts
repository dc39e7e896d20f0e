/**
 * Edits test copies of layouts (never fixtures themselves): adds blobs under their true digest and
 * rewrites index.json, to build graphs the peer tools cannot make (attestations, foreign layers).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface BlobDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  [field: string]: unknown;
}

export async function addBlob(
  layout: string,
  content: string | Uint8Array,
  mediaType: string,
): Promise<BlobDescriptor> {
  const bytes = typeof content === "string" ? Buffer.from(content) : Buffer.from(content);
  const hex = createHash("sha256").update(bytes).digest("hex");
  await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
  await writeFile(join(layout, "blobs", "sha256", hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

export async function addJsonBlob(
  layout: string,
  document: unknown,
  mediaType: string,
): Promise<BlobDescriptor> {
  return addBlob(layout, JSON.stringify(document), mediaType);
}

export async function readIndex(
  layout: string,
): Promise<{ manifests: BlobDescriptor[]; [field: string]: unknown }> {
  return JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
}

export async function writeIndex(layout: string, manifests: readonly BlobDescriptor[]): Promise<void> {
  const index = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests };
  await writeFile(join(layout, "index.json"), JSON.stringify(index));
}

export const tagged = (descriptor: BlobDescriptor, tag: string): BlobDescriptor => ({
  ...descriptor,
  annotations: { "org.opencontainers.image.ref.name": tag },
});
