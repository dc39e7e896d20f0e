/**
 * Platforms (`os/arch[/variant]`): parsing, formatting, normalisation and the preference order used
 * to pick one manifest out of an image index. The rules follow containerd's `platforms` package
 * (database.go for normalisation, compare.go for `Only` / `OnlyStrict`), so that `roci` picks the
 * same manifest that `ctr`, nerdctl or BuildKit would pick for the same request.
 */
import { endianness } from "node:os";
import { RociError } from "../errors.ts";
import type { Platform } from "./documents.ts";

export type { Platform } from "./documents.ts";

/** The rank of a platform the matcher does not accept. Larger than every real rank, so `<` just works. */
export const noMatchRank = Number.POSITIVE_INFINITY;

export interface PlatformMatchOptions {
  /** Accept only the exact (normalised) platform, never a compatible fallback (containerd's `OnlyStrict`). */
  strict?: boolean;
}

export interface PlatformMatcher {
  /** The normalised platforms accepted, best first; `rank` is an index into this list. */
  readonly order: readonly Platform[];
  matches(candidate: Platform): boolean;
  /** 0 for the wanted platform itself, 1, 2, … for ever worse fallbacks, `noMatchRank` when not accepted. */
  rank(candidate: Platform): number;
}

const expectedForm = "expected os/arch[/variant], e.g. linux/arm64/v8";

/** containerd's specifier component grammar; anything else is a typo, not a platform. */
const component = /^[A-Za-z0-9_.-]+$/;

/**
 * Parses `os/arch[/variant]` exactly as written: no case folding or alias resolution, so that
 * `formatPlatform` gives the text back. Matching normalises both sides, so nothing is lost.
 * Unlike containerd, a lone `linux` or `arm64` is refused: guessing the missing half from the host
 * would make the same command pick different images on different machines.
 */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3) {
    const reason = parts.length < 2 ? "both an os and an architecture are needed" : "too many components";
    throw invalidPlatform(text, reason);
  }
  const bad = parts.find((part) => !component.test(part));
  if (bad !== undefined) {
    const reason = bad === "" ? "empty component" : `"${bad}" is not a valid component`;
    throw invalidPlatform(text, reason);
  }
  const [os, architecture, variant] = parts as [string, string, string?];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

function invalidPlatform(text: string, reason: string): RociError {
  return new RociError("USAGE", `invalid platform "${text}": ${reason}; ${expectedForm}`, { subject: text });
}

/** `os/arch[/variant]`; os.version and os.features have no place in this form and are left out. */
export function formatPlatform(platform: Platform): string {
  const head = `${platform.os}/${platform.architecture}`;
  return platform.variant ? `${head}/${platform.variant}` : head;
}

/**
 * The canonical spelling of a platform, so that aliases compare equal: lower case, `macos` is
 * `darwin`, `x86_64` is `amd64`, `aarch64` is `arm64`, and the default variant of each architecture
 * is spelt one way only (`amd64` and `arm64` without it, `arm` with `v7`). os.version and os.features
 * are kept as given. Idempotent.
 */
export function normalizePlatform(platform: Platform): Platform {
  const os = normalizeOs(platform.os);
  const [architecture, variant] = normalizeArch(platform.architecture, platform.variant ?? "");
  return withVariant({ ...platform, os, architecture }, variant);
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase();
  return lower === "macos" ? "darwin" : lower;
}

function normalizeArch(architecture: string, variant: string): [string, string] {
  const arch = architecture.toLowerCase();
  const v = variant.toLowerCase();
  switch (arch) {
    case "i386":
    case "x86":
      // 386 has no variants worth keeping; containerd drops whatever was given.
      return ["386", ""];
    case "x86_64":
    case "x86-64":
    case "amd64":
      // v1 is the baseline every amd64 CPU meets, so amd64/v1 is plain amd64.
      return ["amd64", v === "v1" ? "" : v];
    case "aarch64":
    case "arm64":
      return ["arm64", normalizeArm64Variant(v)];
    case "armhf":
      return ["arm", "v7"];
    case "armel":
      return ["arm", "v6"];
    case "arm":
      return ["arm", normalizeArmVariant(v)];
    default:
      return [arch, v];
  }
}

/** v8 is the baseline of arm64, so it is left implicit; v9 is spelt `v9` whichever way it came. */
function normalizeArm64Variant(variant: string): string {
  switch (variant) {
    case "8":
    case "v8":
    case "v8.0":
      return "";
    case "9":
    case "9.0":
    case "v9.0":
      return "v9";
    default:
      return variant;
  }
}

/** Unlike arm64, 32-bit arm keeps its variant explicit, with v7 (armhf) as the default. */
function normalizeArmVariant(variant: string): string {
  switch (variant) {
    case "":
    case "7":
      return "v7";
    case "5":
    case "6":
    case "8":
      return `v${variant}`;
    default:
      return variant;
  }
}

/** Sets or removes `variant`, so that "no variant" has one representation (an absent key). */
function withVariant(platform: Platform, variant: string): Platform {
  const { variant: _dropped, ...rest } = platform;
  return variant === "" ? rest : { ...rest, variant };
}

/** What `hostPlatform` needs to know about the machine; separate so the mapping can be tested anywhere. */
export interface HostFacts {
  /** `process.platform` */
  platform: string;
  /** `process.arch` */
  arch: string;
  /** `process.config.variables.arm_version`, when Node was built for 32-bit arm. */
  armVersion?: string | undefined;
  /** `os.endianness()` */
  endianness: "BE" | "LE";
}

/** The platform of the machine roci runs on, as an image would declare it. */
export function hostPlatform(): Platform {
  const variables = process.config.variables as unknown as Record<string, unknown>;
  const armVersion = variables.arm_version;
  return hostPlatformOf({
    platform: process.platform,
    arch: process.arch,
    armVersion: typeof armVersion === "string" ? armVersion : undefined,
    endianness: endianness(),
  });
}

/**
 * Maps Node's names to Go's, which images use. Every OS but Windows runs Linux containers (in a VM
 * on macOS), so the host OS is linux unless it is win32, as Docker Desktop and nerdctl assume.
 */
export function hostPlatformOf(facts: HostFacts): Platform {
  const os = facts.platform === "win32" ? "windows" : "linux";
  const [architecture, variant] = goArch(facts);
  return normalizePlatform(variant === "" ? { os, architecture } : { os, architecture, variant });
}

function goArch(facts: HostFacts): [string, string] {
  switch (facts.arch) {
    case "x64":
      return ["amd64", ""];
    case "ia32":
      return ["386", ""];
    case "arm": {
      // Node records the ARM version it was compiled for; "default" or absent means the usual v7.
      const version =
        facts.armVersion !== undefined && /^\d+$/.test(facts.armVersion) ? facts.armVersion : "7";
      return ["arm", `v${version}`];
    }
    case "ppc64":
      // Go distinguishes the two byte orders in the architecture name; Node does not.
      return [facts.endianness === "LE" ? "ppc64le" : "ppc64", ""];
    case "mipsel":
      return ["mipsle", ""];
    case "mips64el":
      return ["mips64le", ""];
    default:
      // arm64, s390x, s390, riscv64, loong64, ppc, mips and mips64 are spelt alike in Node and Go.
      return [facts.arch, ""];
  }
}

/**
 * BuildKit stores provenance and SBOM attestations in the image index as manifests whose platform
 * is `unknown/unknown`. They are never an image to run, so they are never chosen.
 */
export function isAttestation(platform: Platform | undefined): boolean {
  if (platform === undefined) return false;
  return platform.os.toLowerCase() === "unknown" && platform.architecture.toLowerCase() === "unknown";
}

/**
 * A matcher for `wanted`. Non-strict, it also accepts the platforms a machine of that kind can run,
 * in containerd's order (`platforms.Only`):
 *   arm/vN      → arm/vN, arm/v(N-1), …, arm/v5
 *   arm64/v8.x  → arm64/v8.x, …, arm64/v8.1, arm64, then arm/v8, arm/v7, arm/v6, arm/v5
 *   arm64/v9.x  → arm64/v9.x, …, arm64/v9, then arm64/v8.(x+5, at most 9), …, arm64, then arm/v8 … arm/v5
 *   amd64/vN    → amd64/vN, amd64/v(N-1), …, amd64, then 386
 * Strict, it accepts only the wanted platform (`platforms.OnlyStrict`). Both sides are normalised
 * first, so `linux/aarch64` matches `linux/arm64/v8`.
 *
 * Beyond os/arch/variant, a candidate must also pass two checks taken from the wanted platform:
 * on Windows, when both declare an os.version with a build number, the first three components
 * (major.minor.build) must be equal, since Windows containers need the host's build; and when the
 * wanted platform lists os.features, the candidate's must be a subset of them. `unknown/unknown`
 * is never accepted.
 */
export function platformMatcher(wanted: Platform, options: PlatformMatchOptions = {}): PlatformMatcher {
  const target = normalizePlatform(wanted);
  const order = options.strict ? [target] : compatiblePlatforms(target);
  const keys = order.map(platformKey);
  const rank = (candidate: Platform): number => {
    if (isAttestation(candidate)) return noMatchRank;
    const normal = normalizePlatform(candidate);
    if (!osVersionAccepts(target, normal) || !osFeaturesAccept(target, normal)) return noMatchRank;
    const index = keys.indexOf(platformKey(normal));
    return index === -1 ? noMatchRank : index;
  };
  return { order, rank, matches: (candidate) => rank(candidate) !== noMatchRank };
}

/** The identity compared by the matcher; os.version and os.features are checked separately. */
function platformKey(platform: Platform): string {
  return `${platform.os}/${platform.architecture}/${platform.variant ?? ""}`;
}

/** `target` (normalised) and then what it can also run, best first, each normalised. */
function compatiblePlatforms(target: Platform): Platform[] {
  const { os } = target;
  const make = (architecture: string, variant: string) => normalizePlatform({ os, architecture, variant });
  const fallbacks = fallbackArchitectures(target.architecture, target.variant ?? "").map(([arch, variant]) =>
    make(arch, variant),
  );
  // The target keeps its os.version and os.features; fallbacks are only compared on os/arch/variant.
  return [target, ...fallbacks];
}

type ArchVariant = readonly [architecture: string, variant: string];

/** What a CPU of `architecture`/`variant` (normalised) can run besides itself, best first. */
function fallbackArchitectures(architecture: string, variant: string): ArchVariant[] {
  switch (architecture) {
    case "amd64": {
      // Every x86-64 level runs the lower levels, and the CPU runs 32-bit x86 code.
      // amd64/v1 normalises to plain amd64, so the last of the lower levels is spelt without variant.
      const level = versionNumber(variant) ?? 1;
      const lower = descending(level - 1, 1).map((n): ArchVariant => ["amd64", `v${n}`]);
      return [...lower, ["386", ""]];
    }
    case "arm": {
      const version = versionNumber(variant);
      return version === undefined ? [] : descending(version - 1, 5).map((n) => ["arm", `v${n}`]);
    }
    case "arm64":
      return arm64Fallbacks(variant);
    default:
      return [];
  }
}

/**
 * arm64/v8.x runs the lower v8 revisions; v9.x runs the lower v9 revisions and v8 up to v8.(x+5),
 * the revision v9.x is aligned with. Both run 32-bit arm up to v8. An arm64 variant of any other
 * shape gets no fallbacks (containerd accepts nothing at all for it; the exact platform is fairer).
 */
function arm64Fallbacks(variant: string): ArchVariant[] {
  const revision = /^v(\d+)(?:\.(\d+))?$/.exec(variant === "" ? "v8" : variant);
  const major = Number(revision?.[1]);
  if (revision === null || (major !== 8 && major !== 9)) return [];
  const minor = Number(revision[2] ?? "0");
  const arm64 = (maj: number, from: number): ArchVariant[] =>
    descending(from, 0).map((n) => ["arm64", n === 0 ? `v${maj}` : `v${maj}.${n}`]);
  const own = arm64(major, minor).slice(1);
  const v8 = major === 9 ? arm64(8, Math.min(minor + 5, 9)) : [];
  const arm = descending(8, 5).map((n): ArchVariant => ["arm", `v${n}`]);
  return [...own, ...v8, ...arm];
}

/** `vN` → N; undefined for anything else, which then has no numbered fallbacks. */
function versionNumber(variant: string): number | undefined {
  const match = /^v(\d+)$/.exec(variant);
  return match ? Number(match[1]) : undefined;
}

/** [from, from-1, …, to]; empty when from < to. */
function descending(from: number, to: number): number[] {
  const out: number[] = [];
  for (let n = from; n >= to; n--) out.push(n);
  return out;
}

/** The major.minor.build of a Windows os.version, or undefined when it has no build number. */
function windowsBuild(osVersion: string | undefined): string | undefined {
  const parts = osVersion?.split(".") ?? [];
  return parts.length >= 3 ? parts.slice(0, 3).join(".") : undefined;
}

function osVersionAccepts(target: Platform, candidate: Platform): boolean {
  // Only Windows ties a container to the host's kernel build; elsewhere os.version is informative.
  if (target.os !== "windows") return true;
  const want = windowsBuild(target["os.version"]);
  const have = windowsBuild(candidate["os.version"]);
  return want === undefined || have === undefined || want === have;
}

function osFeaturesAccept(target: Platform, candidate: Platform): boolean {
  const wanted = target["os.features"];
  if (wanted === undefined || wanted.length === 0) return true;
  const allowed = new Set(wanted);
  return (candidate["os.features"] ?? []).every((feature) => allowed.has(feature));
}

/**
 * The entry whose platform `wanted` prefers most (lowest rank). Among equally good entries the
 * first in order wins, as the OCI image spec asks of image indexes. Entries without a platform and
 * attestations are never chosen.
 */
export function selectPlatform<T extends { platform?: Platform }>(
  entries: readonly T[],
  wanted: Platform,
  options?: PlatformMatchOptions,
): T | undefined {
  const matcher = platformMatcher(wanted, options);
  let best: T | undefined;
  let bestRank = noMatchRank;
  for (const entry of entries) {
    if (entry.platform === undefined) continue;
    const rank = matcher.rank(entry.platform);
    // Strictly less, so that the first of equally ranked entries stays chosen.
    if (rank < bestRank) {
      best = entry;
      bestRank = rank;
    }
  }
  return best;
}
