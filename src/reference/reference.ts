/**
 * Everything a user types to name an image (DESIGN.md, "Reference resolution"):
 *
 *   oci-layout://PATH[:TAG][@DIGEST]     buildx's form; `oci-layout:///abs` is absolute, `oci-layout://rel` relative
 *   oci:PATH[:TAG][@DIGEST]              skopeo's form
 *   ocidir://PATH[:TAG][@DIGEST]         regclient's form
 *   oci-archive:PATH[:TAG][@DIGEST]      a tar of a layout
 *   docker-archive:PATH[:NAME:TAG|:@N]   a `docker save` tar, one image picked by name or by 0-based index
 *   docker://REFERENCE                   a registry
 *   anything else                        a registry reference (`bare: "registry"`, the default) or a
 *                                        layout path (`bare: "layout"`)
 *
 * Layout paths (a documented superset of buildx's rules): the digest is the text after the last `@`
 * only if it is a valid reference digest, otherwise the `@` stays in the path (text that fits the digest
 * grammar but fails `parseDigest` is an error, as in buildx); the tag is the text after the last `:` only
 * if all of it fits the tag grammar and the colon is not a Windows drive colon (`C:\…`, `C:/…`). So
 * `/tmp/build:cache/layout` is a path. Trailing `/` characters are dropped from every path (`/` and `C:/`
 * stay): that is also the escape for a path whose last component looks like `:tag` or `@digest` —
 * write `oci-layout://dir:v1/` to mean the directory `dir:v1`. An empty path is an error. No tag and no
 * digest leaves `tag` undefined; the resolver applies the `latest` default.
 */
import type { Digest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import {
  type DockerReference,
  formatDockerReference,
  isValidTag,
  referenceDigestOf,
  tryParseDockerReference,
} from "./docker-reference.ts";

export type LayoutScheme = "oci-layout" | "oci" | "ocidir";

export type ImageReference =
  | { transport: "oci-layout"; path: string; tag?: string; digest?: Digest; scheme: LayoutScheme }
  | { transport: "oci-archive"; path: string; tag?: string; digest?: Digest }
  | { transport: "docker-archive"; path: string; name?: DockerReference; index?: number }
  | { transport: "registry"; ref: DockerReference; explicitScheme: boolean };

export type LayoutReference = Extract<ImageReference, { transport: "oci-layout" }>;
export type OciArchiveReference = Extract<ImageReference, { transport: "oci-archive" }>;
export type DockerArchiveReference = Extract<ImageReference, { transport: "docker-archive" }>;
export type RegistryReference = Extract<ImageReference, { transport: "registry" }>;

export interface ParseReferenceOptions {
  /** What input without a transport prefix means: a registry reference (default) or a layout path. */
  bare?: "layout" | "registry";
}

export interface LayoutPath {
  path: string;
  tag?: string;
  digest?: Digest;
}

const layoutPrefixes: Record<LayoutScheme, string> = {
  "oci-layout": "oci-layout://",
  oci: "oci:",
  ocidir: "ocidir://",
};
const ociArchivePrefix = "oci-archive:";
const dockerArchivePrefix = "docker-archive:";
const dockerPrefix = "docker://";

/** Transports of skopeo/containers-image that roci does not read; named so they are not taken for registry names. */
const foreignTransports = ["containers-storage", "docker-daemon", "dir", "ostree", "sif", "tarball"];
/** `scheme://`, at least two characters so that `C://dir` stays a Windows path. */
const urlScheme = /^([A-Za-z][A-Za-z0-9+.-]+):\/\//;

const formsHint =
  "accepted forms: oci-layout://PATH[:TAG][@DIGEST], oci:PATH[:TAG][@DIGEST], ocidir://PATH[:TAG][@DIGEST], " +
  "oci-archive:PATH[:TAG][@DIGEST], docker-archive:PATH[:NAME:TAG|:@INDEX], docker://[HOST/]REPO[:TAG][@DIGEST]";
const bareHint: Record<"layout" | "registry", string> = {
  registry: `${formsHint}, or a bare [HOST/]REPO[:TAG][@DIGEST] (a registry image)`,
  layout: `${formsHint}, or a bare PATH[:TAG][@DIGEST] (an OCI layout directory)`,
};

/** Parses what a user typed to name an image. Throws INVALID_REFERENCE (or UNSUPPORTED_TRANSPORT). */
export function parseReference(input: string, options: ParseReferenceOptions = {}): ImageReference {
  const bare = options.bare ?? "registry";
  const fail = (problem: string, cause?: unknown): never => {
    throw new RociError("INVALID_REFERENCE", `invalid reference "${truncate(input)}": ${problem}`, {
      subject: input,
      hint: bareHint[bare],
      cause,
    });
  };

  for (const scheme of ["oci-layout", "ocidir", "oci"] as const) {
    const prefix = layoutPrefixes[scheme];
    if (input.startsWith(prefix)) {
      const parsed = splitLayoutPath(input.slice(prefix.length));
      if (typeof parsed === "string") return fail(parsed);
      return { transport: "oci-layout", ...parsed, scheme };
    }
  }
  if (input.startsWith(ociArchivePrefix)) {
    const parsed = splitLayoutPath(input.slice(ociArchivePrefix.length));
    if (typeof parsed === "string") return fail(parsed);
    return { transport: "oci-archive", ...parsed };
  }
  if (input.startsWith(dockerArchivePrefix)) {
    const parsed = splitDockerArchive(input.slice(dockerArchivePrefix.length));
    if (typeof parsed === "string") return fail(parsed);
    return parsed;
  }
  if (input.startsWith(dockerPrefix)) {
    const result = tryParseDockerReference(input.slice(dockerPrefix.length));
    if (!result.ok) return fail(result.problem, result.cause);
    return { transport: "registry", ref: result.ref, explicitScheme: true };
  }

  const scheme = urlScheme.exec(input)?.[1];
  if (scheme !== undefined) unsupported(input, scheme, bare);
  if (input === "") return fail("the reference is empty");

  if (bare === "layout") {
    const parsed = splitLayoutPath(input);
    if (typeof parsed === "string") return fail(parsed);
    return { transport: "oci-layout", ...parsed, scheme: "oci-layout" };
  }

  const foreign = foreignTransports.find((name) => input.startsWith(`${name}:`));
  if (foreign !== undefined) unsupported(input, foreign, bare);
  const result = tryParseDockerReference(input);
  if (!result.ok) return fail(result.problem, result.cause);
  return { transport: "registry", ref: result.ref, explicitScheme: false };
}

/**
 * The `PATH[:TAG][@DIGEST]` rules shared by every layout form (see the module comment), applied to
 * text without a transport prefix. Throws INVALID_REFERENCE.
 */
export function parseLayoutPath(text: string): LayoutPath {
  const parsed = splitLayoutPath(text);
  if (typeof parsed !== "string") return parsed;
  throw new RociError("INVALID_REFERENCE", `invalid layout reference "${truncate(text)}": ${parsed}`, {
    subject: text,
    hint: "a layout reference is PATH[:TAG][@DIGEST]; append / to a directory whose name ends in :TAG or @DIGEST",
  });
}

/**
 * The text that `parseReference` turns back into `ref`: `parseReference(formatReference(r))` deep-equals
 * `r` for every `r` it can return (a registry reference without `explicitScheme` is written bare, so read
 * it back with the default `bare: "registry"`). A path whose end would be read as `:TAG`, `@DIGEST`,
 * `:NAME:TAG` or `:@N` is written with a trailing `/`, which the parser drops.
 */
export function formatReference(ref: ImageReference): string {
  switch (ref.transport) {
    case "oci-layout": {
      const prefix = layoutPrefixes[ref.scheme];
      return chooseForm(ref, (path) => prefix + layoutText(path, ref.tag, ref.digest));
    }
    case "oci-archive":
      return chooseForm(ref, (path) => ociArchivePrefix + layoutText(path, ref.tag, ref.digest));
    case "docker-archive": {
      if (ref.name !== undefined && ref.index !== undefined) {
        throw new RociError(
          "INVALID_REFERENCE",
          `docker-archive reference to ${ref.path} has both a name and an index; give one`,
          { subject: ref.path },
        );
      }
      let suffix = "";
      if (ref.name !== undefined) suffix = `:${formatDockerReference(ref.name)}`;
      else if (ref.index !== undefined) suffix = `:@${ref.index}`;
      return chooseForm(ref, (path) => dockerArchivePrefix + path + suffix);
    }
    case "registry": {
      // The full name, never the familiar one: `oci:x` or `docker-archive:x` as a bare familiar name
      // would be read back as a transport.
      const text = formatDockerReference(ref.ref);
      return ref.explicitScheme ? dockerPrefix + text : text;
    }
  }
}

/** Writes `ref` plainly if that reads back as `ref`, otherwise with a `/` after the path. */
function chooseForm(
  ref: Exclude<ImageReference, RegistryReference>,
  write: (path: string) => string,
): string {
  const plain = write(ref.path);
  if (readsBackAs(plain, ref)) return plain;
  return write(`${ref.path}/`);
}

function readsBackAs(text: string, ref: ImageReference): boolean {
  let parsed: ImageReference;
  try {
    parsed = parseReference(text);
  } catch {
    return false;
  }
  return sameReference(parsed, ref);
}

function sameReference(a: ImageReference, b: ImageReference): boolean {
  switch (a.transport) {
    case "oci-layout":
      return (
        b.transport === "oci-layout" &&
        a.scheme === b.scheme &&
        a.path === b.path &&
        a.tag === b.tag &&
        a.digest === b.digest
      );
    case "oci-archive":
      return b.transport === "oci-archive" && a.path === b.path && a.tag === b.tag && a.digest === b.digest;
    case "docker-archive":
      return (
        b.transport === "docker-archive" &&
        a.path === b.path &&
        a.index === b.index &&
        (a.name === undefined
          ? b.name === undefined
          : b.name !== undefined && formatDockerReference(a.name) === formatDockerReference(b.name))
      );
    case "registry":
      return (
        b.transport === "registry" &&
        a.explicitScheme === b.explicitScheme &&
        formatDockerReference(a.ref) === formatDockerReference(b.ref)
      );
  }
}

function layoutText(path: string, tag: string | undefined, digest: string | undefined): string {
  let text = path;
  if (tag !== undefined) text += `:${tag}`;
  if (digest !== undefined) text += `@${digest}`;
  return text;
}

/** The layout path rules; a problem string instead of a result when the text is not valid. */
function splitLayoutPath(text: string): LayoutPath | string {
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const found = referenceDigestOf(rest.slice(at + 1));
    if (found !== undefined) {
      if ("problem" in found) return found.problem;
      digest = found.digest;
      rest = rest.slice(0, at);
    }
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0 && !isDriveColon(rest, colon)) {
    const candidate = rest.slice(colon + 1);
    if (isValidTag(candidate)) {
      tag = candidate;
      rest = rest.slice(0, colon);
    }
  }

  const path = trimTrailingSlashes(rest);
  if (path === "") return "the path is empty";
  const result: LayoutPath = { path };
  if (tag !== undefined) result.tag = tag;
  if (digest !== undefined) result.digest = digest;
  return result;
}

/**
 * `PATH[:NAME:TAG | :@N]`. NAME:TAG is a docker reference with a tag and no digest, taken after the
 * leftmost colon where the rest parses as one (so a directory may contain `:`); otherwise a trailing
 * `:@N` is a 0-based index; otherwise it is all path.
 */
function splitDockerArchive(text: string): DockerArchiveReference | string {
  let digestProblem: string | undefined;
  for (let colon = text.indexOf(":"); colon >= 0; colon = text.indexOf(":", colon + 1)) {
    const result = tryParseDockerReference(text.slice(colon + 1));
    if (!result.ok) continue;
    if (result.ref.digest !== undefined) {
      digestProblem ??= `the image name "${truncate(text.slice(colon + 1))}" in a docker-archive reference cannot carry a digest`;
      continue;
    }
    if (result.ref.tag === undefined) continue;
    const path = trimTrailingSlashes(text.slice(0, colon));
    if (path === "") return "the archive path is empty";
    return { transport: "docker-archive", path, name: result.ref };
  }
  if (digestProblem !== undefined) return digestProblem;

  const indexMatch = /:@([^/]*)$/.exec(text);
  if (indexMatch !== null) {
    const digits = indexMatch[1]!;
    const index = Number(digits);
    if (!/^[0-9]+$/.test(digits) || !Number.isSafeInteger(index)) {
      return `"@${truncate(digits)}" is not a source index (expected @ and a number, 0 for the first image)`;
    }
    const path = trimTrailingSlashes(text.slice(0, indexMatch.index));
    if (path === "") return "the archive path is empty";
    return { transport: "docker-archive", path, index };
  }

  const path = trimTrailingSlashes(text);
  if (path === "") return "the archive path is empty";
  return { transport: "docker-archive", path };
}

/** A colon at index 1 after a letter and before `/` or `\`: `C:\…`, `C:/…`. */
function isDriveColon(text: string, colon: number): boolean {
  return colon === 1 && /^[A-Za-z]:[/\\]/.test(text);
}

/** Drops trailing `/`, but keeps a root (`/`) and a drive root (`C:/`). */
function trimTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/" && !(end === 3 && /^[A-Za-z]:/.test(path))) end--;
  return path.slice(0, end);
}

function unsupported(input: string, transport: string, bare: "layout" | "registry"): never {
  throw new RociError(
    "UNSUPPORTED_TRANSPORT",
    `reference "${truncate(input)}": roci does not read the "${transport}" transport`,
    { subject: input, hint: bareHint[bare] },
  );
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
