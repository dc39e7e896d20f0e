/** The model `roci inspect` prints: what a reference resolves to, its platforms, config and layers. */
import type { Descriptor, Platform } from "../spec/documents.ts";
import { isIndexType } from "../spec/media-types.ts";
import { formatPlatform } from "../spec/platform.ts";
import type { ReadOnlyTarget, Selector } from "../store/store.ts";
import { fetchConfig } from "./documents.ts";
import { isAttestationEntry, type SelectOptions, selectImage } from "./select.ts";

export interface PlatformEntry {
  platform: string | null;
  digest: string;
  mediaType: string;
  size: number;
  attestation: boolean;
}

export interface InspectResult {
  location: string;
  /** What the reference resolved to (an index stays an index). */
  resolved: { digest: string; mediaType: string; size: number };
  /** The entries of the first index passed through, when the reference names one. */
  platforms?: PlatformEntry[];
  manifest: { digest: string; mediaType: string; size: number; platform: string };
  config: {
    digest: string;
    mediaType: string;
    size: number;
    created?: string;
    author?: string;
    user?: string;
    workingDir?: string;
    entrypoint?: string[];
    cmd?: string[];
    env?: string[];
    labels?: Record<string, string>;
    exposedPorts?: string[];
    stopSignal?: string;
  };
  layers: Array<{ digest: string; mediaType: string; size: number; urls?: string[] }>;
  /** Bytes of the manifest, config and layers as stored (what a pull transfers). */
  totalSize: number;
}

function platformEntry(entry: Descriptor): PlatformEntry {
  return {
    platform: entry.platform ? formatPlatform(entry.platform) : null,
    digest: entry.digest,
    mediaType: entry.mediaType,
    size: entry.size,
    attestation: isAttestationEntry(entry),
  };
}

function compact<T extends object>(value: T): T {
  return Object.fromEntries(
    Object.entries(value).filter(([, field]) => field !== undefined && field !== null),
  ) as T;
}

export async function inspectImage(
  store: ReadOnlyTarget,
  selector: Selector,
  options: SelectOptions = {},
): Promise<InspectResult> {
  const resolved = await store.resolve(selector);
  const selected = await selectImage(store, resolved, options);
  const manifest = selected.manifest.value;
  const config = await fetchConfig(store, manifest.config);
  const { os, architecture, variant } = config.value;
  // The index entry's platform is the more precise (umoci, for one, writes no variant in configs).
  const platform: Platform =
    selected.descriptor.platform ?? (variant ? { os, architecture, variant } : { os, architecture });
  const settings = config.value.config ?? undefined;
  const firstIndex = selected.indexes[0];
  const layersSize = manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
  return {
    location: store.location,
    resolved: { digest: resolved.digest, mediaType: resolved.mediaType, size: resolved.size },
    ...(firstIndex && isIndexType(resolved.mediaType)
      ? { platforms: firstIndex.index.value.manifests.map(platformEntry) }
      : {}),
    manifest: {
      digest: selected.descriptor.digest,
      mediaType: selected.descriptor.mediaType,
      size: selected.descriptor.size,
      platform: formatPlatform(platform),
    },
    config: compact({
      digest: manifest.config.digest,
      mediaType: manifest.config.mediaType,
      size: manifest.config.size,
      created: config.value.created,
      author: config.value.author,
      user: settings?.User || undefined,
      workingDir: settings?.WorkingDir || undefined,
      entrypoint: settings?.Entrypoint ?? undefined,
      cmd: settings?.Cmd ?? undefined,
      env: settings?.Env ?? undefined,
      labels: settings?.Labels ?? undefined,
      exposedPorts: settings?.ExposedPorts ? Object.keys(settings.ExposedPorts).sort() : undefined,
      stopSignal: settings?.StopSignal || undefined,
    }),
    layers: manifest.layers.map((layer) =>
      compact({ digest: layer.digest, mediaType: layer.mediaType, size: layer.size, urls: layer.urls }),
    ),
    totalSize: selected.descriptor.size + manifest.config.size + layersSize,
  };
}
