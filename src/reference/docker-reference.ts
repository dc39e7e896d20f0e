/**
 * Docker (distribution) image references, normalised the way `docker pull` does:
 *
 *   reference   := name [ ":" tag ] [ "@" digest ]
 *   name        := [ domain "/" ] path                    (at most 255 characters once normalised)
 *   domain      := host [ ":" port ]                      host: DNS-like name, IPv4, or "[" IPv6 "]"
 *   path        := component ( "/" component )*           component: [a-z0-9]+ ( (.|_|__|-+) [a-z0-9]+ )*
 *   tag         := [\w][\w.-]{0,127}
 *   digest      := algorithm ":" hex{32,}                 algorithm: [A-Za-z][A-Za-z0-9]* ([-_+.][A-Za-z][A-Za-z0-9]*)*
 *
 * The first "/"-separated component is a domain only if it contains "." or ":", is `localhost`, or has
 * an upper-case letter; otherwise the domain is `docker.io`. `index.docker.io` becomes `docker.io`, and
 * a one-component path on `docker.io` gets the `library/` prefix. A digest must also pass `parseDigest`
 * (so sha256 means exactly 64 lower-case hex characters). No default tag is added here.
 */
import { type Digest, parseDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";

export interface DockerReference {
  /** The registry host, with its port if any: `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** The repository path on that registry: `library/alpine`, `lab/debian`. */
  path: string;
  tag?: string;
  digest?: Digest;
}

export const defaultDomain = "docker.io";
const legacyDefaultDomain = "index.docker.io";
const officialRepoPrefix = "library/";
export const maxNameLength = 255;

const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6Address = "\\[[a-fA-F0-9:]+\\]";
const domainGrammar = new RegExp(`^(?:${domainName}|${ipv6Address})(?::[0-9]+)?$`);
const pathComponentGrammar = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** The tag grammar, anchored. */
export const tagGrammar = /^\w[\w.-]{0,127}$/;
/** The digest grammar of references (stricter about the algorithm, looser about case than `parseDigest`), anchored. */
export const referenceDigestGrammar =
  /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const imageId = /^[a-f0-9]{64}$/;

const grammarHint =
  "a registry reference looks like [HOST[:PORT]/]REPOSITORY[:TAG][@DIGEST], e.g. alpine:3.20, " +
  "ghcr.io/org/app@sha256:<64 hex>, localhost:5000/team/app:dev; repository names are lower-case";

export type DockerReferenceResult =
  | { ok: true; ref: DockerReference }
  | { ok: false; problem: string; cause?: unknown };

/** True if `text` is a valid tag (`[\w][\w.-]{0,127}`). */
export function isValidTag(text: string): boolean {
  return tagGrammar.test(text);
}

/**
 * The digest in `text` if it is a valid reference digest: it fits the reference digest grammar and
 * `parseDigest` accepts it. `undefined` if it does not fit the grammar; a problem string if it fits the
 * grammar but is not a valid digest (e.g. a sha256 with 40 hex characters, or an upper-case algorithm).
 */
export function referenceDigestOf(
  text: string,
): { digest: Digest } | { problem: string; cause: unknown } | undefined {
  if (!referenceDigestGrammar.test(text)) return undefined;
  try {
    return { digest: parseDigest(text).digest };
  } catch (error) {
    const detail = error instanceof RociError ? error.message : String(error);
    return { problem: `invalid digest: ${detail}`, cause: error };
  }
}

/** Like `parseDockerReference`, but reports a problem instead of throwing. */
export function tryParseDockerReference(input: string): DockerReferenceResult {
  if (input === "") return { ok: false, problem: "the reference is empty" };
  if (imageId.test(input)) {
    return {
      ok: false,
      problem: "a 64-character hexadecimal string is an image ID, not a repository name",
    };
  }

  // The name and the tag never contain "@", so the first "@" starts the digest.
  let rest = input;
  let digest: Digest | undefined;
  const at = input.indexOf("@");
  if (at >= 0) {
    const text = input.slice(at + 1);
    const found = referenceDigestOf(text);
    if (found === undefined) {
      return {
        ok: false,
        problem: `"${truncate(text)}" is not a digest (expected ALGORITHM:HEX with at least 32 hex characters)`,
      };
    }
    if ("problem" in found) return { ok: false, problem: found.problem, cause: found.cause };
    digest = found.digest;
    rest = input.slice(0, at);
  }

  // A tag never contains "/", and a port is always followed by "/": the tag is after the last ":"
  // when no "/" follows it.
  let name = rest;
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0 && colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    name = rest.slice(0, colon);
    if (!isValidTag(tag)) {
      return {
        ok: false,
        problem:
          tag.length > 128
            ? `tag "${truncate(tag)}" is longer than 128 characters`
            : `tag "${truncate(tag)}" is not valid (letters, digits, "_", "." and "-", not starting with "." or "-")`,
      };
    }
  }
  if (name === "") return { ok: false, problem: "the repository name is empty" };

  let domain = defaultDomain;
  let path = name;
  const slash = name.indexOf("/");
  if (slash >= 0) {
    const first = name.slice(0, slash);
    if (first === "localhost" || /[.:]/.test(first) || first.toLowerCase() !== first) {
      domain = first === legacyDefaultDomain ? defaultDomain : first;
      path = name.slice(slash + 1);
    }
  }
  if (!domainGrammar.test(domain)) {
    return { ok: false, problem: `"${truncate(domain)}" is not a valid registry host[:port]` };
  }
  if (path === "") return { ok: false, problem: "the repository path is empty" };
  for (const component of path.split("/")) {
    if (pathComponentGrammar.test(component)) continue;
    if (component === "") {
      return { ok: false, problem: `repository path "${truncate(path)}" has an empty component` };
    }
    if (pathComponentGrammar.test(component.toLowerCase())) {
      return { ok: false, problem: `repository name "${truncate(path)}" must be lower-case` };
    }
    return {
      ok: false,
      problem:
        `repository path component "${truncate(component)}" is not valid ` +
        '(lower-case letters and digits, separated by ".", "_", "__" or "-")',
    };
  }
  if (domain === defaultDomain && !path.includes("/")) path = officialRepoPrefix + path;

  const fullName = `${domain}/${path}`;
  if (fullName.length > maxNameLength) {
    return {
      ok: false,
      problem: `repository name "${truncate(fullName)}" is longer than ${maxNameLength} characters`,
    };
  }

  const ref: DockerReference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return { ok: true, ref };
}

/**
 * Parses a Docker image reference (`alpine`, `lab/debian:bookworm`, `localhost:5000/a/b:t`,
 * `ghcr.io/o/r@sha256:…`) into its normalised parts. Throws INVALID_REFERENCE naming the input and
 * what is wrong.
 */
export function parseDockerReference(input: string): DockerReference {
  const result = tryParseDockerReference(input);
  if (result.ok) return result.ref;
  throw new RociError("INVALID_REFERENCE", `invalid reference "${truncate(input)}": ${result.problem}`, {
    subject: input,
    hint: grammarHint,
    cause: result.cause,
  });
}

/** The full, normalised form: `domain/path[:tag][@digest]`, e.g. `docker.io/library/alpine:3.20`. */
export function formatDockerReference(ref: DockerReference): string {
  let text = `${ref.domain}/${ref.path}`;
  if (ref.tag !== undefined) text += `:${ref.tag}`;
  if (ref.digest !== undefined) text += `@${ref.digest}`;
  return text;
}

/**
 * The repository name as docker shows it: `docker.io/` dropped, and `library/` too when nothing else
 * is nested under it (`docker.io/library/alpine` → `alpine`, `docker.io/lab/debian` → `lab/debian`,
 * `ghcr.io/o/r` unchanged). No tag or digest; see `familiarString` for those.
 */
export function familiarName(ref: DockerReference): string {
  if (ref.domain !== defaultDomain) return `${ref.domain}/${ref.path}`;
  if (ref.path.startsWith(officialRepoPrefix)) {
    const rest = ref.path.slice(officialRepoPrefix.length);
    if (!rest.includes("/")) return rest;
  }
  return ref.path;
}

/** `familiarName` with the tag and digest: `alpine:3.20`, `lab/debian@sha256:…`. */
export function familiarString(ref: DockerReference): string {
  let text = familiarName(ref);
  if (ref.tag !== undefined) text += `:${ref.tag}`;
  if (ref.digest !== undefined) text += `@${ref.digest}`;
  return text;
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
