/**
 * Digests as the OCI image spec defines them (descriptor.md#digests):
 *   digest := algorithm ":" encoded;  algorithm := [a-z0-9]+ ([+._-][a-z0-9]+)*;  encoded := [a-zA-Z0-9=_-]+
 * sha256 and sha512 are verifiable and must be lower-case hex of the right length. Any other algorithm
 * that fits the grammar parses, but is "unverifiable": it is never trusted and never used as a path.
 */
import { RociError } from "../errors.ts";

/** A digest string that passed `parseDigest`. */
export type Digest = string & { readonly __brand: "Digest" };

export type VerifiableAlgorithm = "sha256" | "sha512";

export interface ParsedDigest {
  readonly digest: Digest;
  readonly algorithm: string;
  readonly encoded: string;
  /** True for sha256 and sha512, the algorithms roci can hash. */
  readonly verifiable: boolean;
}

const grammar = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const hexLength: Record<VerifiableAlgorithm, number> = { sha256: 64, sha512: 128 };
const lowerHex = /^[a-f0-9]+$/;

export function isVerifiableAlgorithm(algorithm: string): algorithm is VerifiableAlgorithm {
  return algorithm === "sha256" || algorithm === "sha512";
}

/** Parses and validates a digest string; throws INVALID_DIGEST naming the input and what is wrong. */
export function parseDigest(input: string): ParsedDigest {
  const match = grammar.exec(input);
  if (!match) {
    throw new RociError("INVALID_DIGEST", `invalid digest "${truncate(input)}": expected ALGORITHM:HEX`, {
      subject: input,
      hint: "a digest looks like sha256:<64 lower-case hex characters>",
    });
  }
  const algorithm = match[1]!;
  const encoded = match[2]!;
  if (isVerifiableAlgorithm(algorithm)) {
    const length = hexLength[algorithm];
    if (encoded.length !== length || !lowerHex.test(encoded)) {
      throw new RociError(
        "INVALID_DIGEST",
        `invalid digest "${truncate(input)}": ${algorithm} needs ${length} lower-case hex characters`,
        { subject: input },
      );
    }
    return { digest: input as Digest, algorithm, encoded, verifiable: true };
  }
  return { digest: input as Digest, algorithm, encoded, verifiable: false };
}

export function isDigest(input: string): input is Digest {
  try {
    parseDigest(input);
    return true;
  } catch {
    return false;
  }
}

/**
 * The digest of a verifiable algorithm, or an UNSUPPORTED_DIGEST error: the gate every code path
 * passes before it hashes content or turns a digest into a file name.
 */
export function requireVerifiable(input: string): ParsedDigest & { algorithm: VerifiableAlgorithm } {
  const parsed = parseDigest(input);
  if (!parsed.verifiable) {
    throw new RociError(
      "UNSUPPORTED_DIGEST",
      `digest ${truncate(input)}: algorithm "${parsed.algorithm}" cannot be verified by roci`,
      {
        subject: input,
        hint: "roci verifies sha256 and sha512; content under other algorithms is not trusted",
      },
    );
  }
  return parsed as ParsedDigest & { algorithm: VerifiableAlgorithm };
}

/** A short form for messages: `sha256:0123456789ab`. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return colon < 0 ? digest : digest.slice(0, colon + 13);
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
