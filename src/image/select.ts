/**
 * From whatever a reference resolved to, down to one image manifest: an image index (nested ones
 * included) is narrowed by platform — normalised and matched as containerd does — skipping
 * attestation entries; an entry without a platform field is judged by its config (PL-5).
 */
import { RociError } from "../errors.ts";
import { Annotation } from "../spec/annotations.ts";
import type { Descriptor, ImageIndex, ImageManifest, Parsed, Platform } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import {
  formatPlatform,
  hostPlatform,
  isAttestation,
  noMatchRank,
  platformMatcher,
} from "../spec/platform.ts";
import type { Fetcher } from "../store/store.ts";
import { fetchConfig, fetchIndex, fetchManifest } from "./documents.ts";

/** Nested indexes deeper than this are refused: real images use one or two levels. */
export const maxIndexDepth = 8;

export interface SelectOptions {
  /** The platform to narrow to; without it the host's, and a lone manifest is taken as it is. */
  platform?: Platform | undefined;
  /** Only exact platform matches (after normalisation), no containerd fallbacks such as arm/v7 → v6. */
  strict?: boolean;
}

export interface SelectedImage {
  /** The indexes passed through, outermost first. */
  indexes: Array<{ descriptor: Descriptor; index: Parsed<ImageIndex> }>;
  descriptor: Descriptor;
  manifest: Parsed<ImageManifest>;
}

/** True for index entries that describe attestations (BuildKit provenance/SBOM), never images. */
export function isAttestationEntry(entry: Descriptor): boolean {
  return (
    isAttestation(entry.platform) ||
    entry.annotations?.[Annotation.dockerReferenceType] === "attestation-manifest"
  );
}

export async function selectImage(
  fetcher: Fetcher,
  root: Descriptor,
  options: SelectOptions = {},
): Promise<SelectedImage> {
  const wanted = options.platform ?? hostPlatform();
  const matcher = platformMatcher(wanted, { strict: options.strict ?? false });
  const indexes: SelectedImage["indexes"] = [];
  const seen = new Set<string>();
  let current = root;
  for (;;) {
    if (seen.has(current.digest)) {
      throw new RociError("MANIFEST_CYCLE", `index ${current.digest}: appears inside itself`, {
        subject: current.digest,
      });
    }
    seen.add(current.digest);
    if (isManifestType(current.mediaType)) {
      const manifest = await fetchManifest(fetcher, current);
      if (options.platform !== undefined && indexes.length === 0) {
        await requirePlatform(fetcher, current, manifest.value, matcher, wanted);
      }
      return { indexes, descriptor: current, manifest };
    }
    if (!isIndexType(current.mediaType)) {
      throw new RociError(
        "INVALID_DOCUMENT",
        `${current.digest}: media type ${current.mediaType} is neither an image manifest nor an index`,
        { subject: current.digest },
      );
    }
    if (indexes.length >= maxIndexDepth) {
      throw new RociError(
        "MANIFEST_CYCLE",
        `index ${root.digest}: nested more than ${maxIndexDepth} levels deep`,
        {
          subject: root.digest,
        },
      );
    }
    const index = await fetchIndex(fetcher, current);
    indexes.push({ descriptor: current, index });
    current = await choose(fetcher, current, index.value, matcher, wanted);
  }
}

type Matcher = ReturnType<typeof platformMatcher>;

async function choose(
  fetcher: Fetcher,
  indexDescriptor: Descriptor,
  index: ImageIndex,
  matcher: Matcher,
  wanted: Platform,
): Promise<Descriptor> {
  let best: { entry: Descriptor; rank: number } | undefined;
  for (const entry of index.manifests) {
    if (isAttestationEntry(entry)) continue;
    if (!isManifestType(entry.mediaType) && !isIndexType(entry.mediaType)) continue;
    const platform = entry.platform ?? (await platformFromConfig(fetcher, entry));
    // A nested index without a platform may hold the wanted one: consider it after every match.
    const rank = platform
      ? matcher.rank(platform)
      : isIndexType(entry.mediaType)
        ? Number.MAX_SAFE_INTEGER
        : noMatchRank;
    if (rank === noMatchRank) continue;
    if (best === undefined || rank < best.rank) best = { entry, rank };
  }
  if (best) return best.entry;
  const available = index.manifests
    .filter((entry) => !isAttestationEntry(entry) && entry.platform)
    .map((entry) => formatPlatform(entry.platform!));
  throw new RociError(
    "PLATFORM_NOT_FOUND",
    `index ${indexDescriptor.digest}: no image for ${formatPlatform(wanted)} (available: ${available.join(", ") || "none"})`,
    { subject: formatPlatform(wanted), hint: "choose one with --platform OS/ARCH[/VARIANT]" },
  );
}

async function platformFromConfig(fetcher: Fetcher, entry: Descriptor): Promise<Platform | undefined> {
  if (!isManifestType(entry.mediaType)) return undefined;
  const manifest = await fetchManifest(fetcher, entry);
  const config = await fetchConfig(fetcher, manifest.value.config);
  const { os, architecture, variant } = config.value;
  return variant ? { os, architecture, variant } : { os, architecture };
}

async function requirePlatform(
  fetcher: Fetcher,
  descriptor: Descriptor,
  manifest: ImageManifest,
  matcher: Matcher,
  wanted: Platform,
): Promise<void> {
  const config = await fetchConfig(fetcher, manifest.config);
  const { os, architecture, variant } = config.value;
  const actual: Platform = variant ? { os, architecture, variant } : { os, architecture };
  if (!matcher.matches(actual)) {
    throw new RociError(
      "PLATFORM_NOT_FOUND",
      `manifest ${descriptor.digest}: is for ${formatPlatform(actual)}, not ${formatPlatform(wanted)}`,
      { subject: formatPlatform(wanted), hint: "drop --platform to take the image as it is" },
    );
  }
}
