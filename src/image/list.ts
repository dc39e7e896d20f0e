/** The model `roci ls` prints: every `index.json` entry with its names and platforms. */
import { namesOf } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import { formatPlatform } from "../spec/platform.ts";
import type { ImageStore } from "../store/store.ts";
import { mapLimit } from "../util/map-limit.ts";
import { fetchConfig, fetchIndex, fetchManifest } from "./documents.ts";
import { isAttestationEntry } from "./select.ts";

export interface ListEntry {
  names: string[];
  digest: string;
  mediaType: string;
  size: number;
  /** os/arch[/variant] of the image, or of each image in an index; attestations excluded. */
  platforms: string[];
  annotations: Record<string, string>;
}

/** Lists the layout's entries; platforms come from descriptors, or else from the documents. */
export async function listLayout(layout: ImageStore): Promise<ListEntry[]> {
  const { manifests } = await layout.index();
  return mapLimit(manifests, 16, async (entry) => ({
    names: namesOf(entry),
    digest: entry.digest,
    mediaType: entry.mediaType,
    size: entry.size,
    platforms: await platformsOf(layout, entry),
    annotations: entry.annotations ?? {},
  }));
}

async function platformsOf(layout: ImageStore, entry: Descriptor): Promise<string[]> {
  if (entry.platform) return [formatPlatform(entry.platform)];
  try {
    if (isIndexType(entry.mediaType)) {
      const index = await fetchIndex(layout, entry);
      return index.value.manifests
        .filter((child) => child.platform && !isAttestationEntry(child))
        .map((child) => formatPlatform(child.platform!));
    }
    if (isManifestType(entry.mediaType)) {
      const manifest = await fetchManifest(layout, entry);
      const { os, architecture, variant } = (await fetchConfig(layout, manifest.value.config)).value;
      return [formatPlatform(variant ? { os, architecture, variant } : { os, architecture })];
    }
  } catch {
    // ls lists what is there; a broken entry shows without platforms and `verify` says why.
  }
  return [];
}
