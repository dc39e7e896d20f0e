/**
 * Which `index.json` entries a tag names — the lookup order of DESIGN.md, a documented superset
 * of buildx (which checks the containerd name, then ref.name) and skopeo (ref.name only):
 *   1. `org.opencontainers.image.ref.name` equals the tag;
 *   2. `io.containerd.image.name` equals the tag;
 *   3. a full reference in either annotation whose tag part equals the tag
 *      (`example.com/app:1.0` answers to `1.0`).
 * The first rule that matches anything decides. Several different digests is an error, never a
 * silent first-wins.
 */
import { shortDigest } from "../digest/digest.ts";
import { RociError } from "../errors.ts";
import { Annotation, namesOf } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";

export const defaultTag = "latest";

function tagPart(name: string): string | undefined {
  const at = name.indexOf("@");
  const withoutDigest = at < 0 ? name : name.slice(0, at);
  const colon = withoutDigest.lastIndexOf(":");
  // A colon before the last slash belongs to a registry port, not a tag.
  if (colon < 0 || colon < withoutDigest.lastIndexOf("/")) return undefined;
  return withoutDigest.slice(colon + 1);
}

const rules: ReadonlyArray<(entry: Descriptor, tag: string) => boolean> = [
  (entry, tag) => entry.annotations?.[Annotation.refName] === tag,
  (entry, tag) => entry.annotations?.[Annotation.containerdName] === tag,
  (entry, tag) => namesOf(entry).some((name) => name.includes("/") && tagPart(name) === tag),
];

/** The entries a tag names, by the first rule that matches any; empty when none does. */
export function entriesForTag(entries: readonly Descriptor[], tag: string): Descriptor[] {
  for (const rule of rules) {
    const matches = entries.filter((entry) => rule(entry, tag));
    if (matches.length > 0) return matches;
  }
  return [];
}

/** Every name a user can resolve in this index, in index order, without repeats. */
export function tagsOf(entries: readonly Descriptor[]): string[] {
  return [...new Set(entries.flatMap(namesOf))];
}

/**
 * Resolves a tag (or the default: `latest`, else the only entry) to one entry.
 * `where` names the layout for messages.
 */
export function lookupTag(
  entries: readonly Descriptor[],
  tag: string | undefined,
  where: string,
): Descriptor {
  const wanted = tag ?? defaultTag;
  const matches = entriesForTag(entries, wanted);
  const digests = [...new Set(matches.map((entry) => entry.digest))];
  if (digests.length > 1) {
    const list = matches.map((entry) => `${entry.digest} (${entry.mediaType})`).join(", ");
    throw new RociError(
      "AMBIGUOUS_TAG",
      `${where}: tag "${wanted}" names ${digests.length} different images: ${list}`,
      {
        subject: wanted,
        hint: `pin one with @DIGEST, e.g. ${where}@${digests[0]}`,
      },
    );
  }
  if (matches[0]) return matches[0];
  if (tag === undefined && entries.length === 1 && entries[0]) return entries[0];
  const available = tagsOf(entries);
  const untagged = entries.filter((entry) => namesOf(entry).length === 0);
  const parts = [available.length > 0 ? `available tags: ${available.join(", ")}` : "the layout has no tags"];
  if (untagged.length > 0) {
    parts.push(`untagged: ${untagged.map((entry) => shortDigest(entry.digest)).join(", ")}`);
  }
  throw new RociError(
    "TAG_NOT_FOUND",
    tag === undefined
      ? `${where}: no tag given, no "latest" tag, and ${entries.length} entries to choose from (${parts.join("; ")})`
      : `${where}: tag "${wanted}" not found (${parts.join("; ")})`,
    { subject: wanted, hint: "name a tag with :TAG or pin an image with @DIGEST" },
  );
}
