/**
 * How a name is written into `index.json`, as buildkit and containerd write it: a plain tag sets
 * `org.opencontainers.image.ref.name`; a full reference (`registry/repo:tag`, normalised as docker
 * does) sets `io.containerd.image.name` to it and `ref.name` to its tag. A name's identity is its
 * full reference when it has one, else the plain tag — so two repositories may share a tag part.
 */
import { RociError } from "../errors.ts";
import { formatDockerReference, isValidTag, parseDockerReference } from "../reference/docker-reference.ts";
import { Annotation } from "../spec/annotations.ts";
import type { Descriptor } from "../spec/documents.ts";

export interface EntryName {
  refName: string;
  containerdName?: string;
}

/** Parses a name a user wants to write; plain tags follow the docker tag grammar. */
export function parseEntryName(name: string): EntryName {
  if (!name.includes("/") && !name.includes(":")) {
    if (!isValidTag(name)) {
      throw new RociError("USAGE", `invalid tag "${name}": expected [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, {
        subject: name,
        hint: "name a repository too with a full reference, e.g. example.com/app:1.0",
      });
    }
    return { refName: name };
  }
  const reference = parseDockerReference(name);
  if (reference.tag === undefined || reference.digest !== undefined) {
    throw new RociError("USAGE", `invalid name "${name}": a full reference needs a tag and no digest`, {
      subject: name,
      hint: "e.g. example.com/app:1.0",
    });
  }
  return { refName: reference.tag, containerdName: formatDockerReference(reference) };
}

export function formatEntryName(name: EntryName): string {
  return name.containerdName ?? name.refName;
}

/** Whether an entry carries this name (by identity: full reference, or a plain tag without one). */
export function hasName(entry: Descriptor, name: EntryName): boolean {
  const annotations = entry.annotations ?? {};
  if (name.containerdName !== undefined)
    return annotations[Annotation.containerdName] === name.containerdName;
  return (
    annotations[Annotation.refName] === name.refName && annotations[Annotation.containerdName] === undefined
  );
}

/** The index.json entry naming `descriptor`: its fields and annotations, with the name's. */
export function namedEntry(descriptor: Descriptor, name: EntryName): Descriptor {
  const {
    [Annotation.refName]: _ref,
    [Annotation.containerdName]: _ctr,
    ...others
  } = descriptor.annotations ?? {};
  const annotations: Record<string, string> = { ...others };
  if (name.containerdName !== undefined) annotations[Annotation.containerdName] = name.containerdName;
  annotations[Annotation.refName] = name.refName;
  return { ...descriptor, annotations };
}

/** For --no-clobber: CONFLICT when one of `names` already names an image other than `digest`. */
export function refuseTaken(
  manifests: readonly Descriptor[],
  names: readonly EntryName[],
  digest: string,
  where: string,
): void {
  for (const name of names) {
    const taken = manifests.find((entry) => hasName(entry, name) && entry.digest !== digest);
    if (taken) {
      throw new RociError("CONFLICT", `${where}: "${formatEntryName(name)}" already names ${taken.digest}`, {
        subject: formatEntryName(name),
        hint: "drop --no-clobber to move the name, or choose another",
      });
    }
  }
}
