/**
 * Where writing commands write: a layout directory (created when missing) or an archive, with the
 * names to give the image there. Several tags at once: `out:t1,t2`. --read-only refuses here,
 * before anything starts.
 */
import { RociError } from "../errors.ts";
import { formatDockerReference, isValidTag } from "../reference/docker-reference.ts";
import { parseReference } from "../reference/reference.ts";
import { LayoutStore } from "../store/layout-store.ts";
import { type EntryName, parseEntryName } from "../store/naming.ts";
import type { CliContext } from "./context.ts";

export interface Destination {
  kind: "layout" | "oci-archive" | "docker-archive";
  path: string;
  names: EntryName[];
}

export function parseDestination(input: string): Destination {
  if (input.startsWith("docker-archive:")) {
    const reference = parseReference(input);
    if (reference.transport !== "docker-archive" || reference.index !== undefined) {
      throw new RociError("USAGE", `${input}: a docker-archive destination takes NAME:TAG, not @N`, {
        subject: input,
      });
    }
    const names = reference.name ? [parseEntryName(formatDockerReference(reference.name))] : [];
    return { kind: "docker-archive", path: reference.path, names };
  }
  if (input.startsWith("oci-archive:")) {
    const { path, names } = parseDestination(input.slice("oci-archive:".length));
    return { kind: "oci-archive", path, names };
  }
  const colon = input.lastIndexOf(":");
  const list = input.slice(colon + 1);
  if (colon > 0 && list.includes(",") && list.split(",").every(isValidTag)) {
    const { path } = parseLayoutOnly(input.slice(0, colon), input);
    return { kind: "layout", path, names: list.split(",").map(parseEntryName) };
  }
  const { path, tag } = parseLayoutOnly(input, input);
  return { kind: "layout", path, names: tag === undefined ? [] : [parseEntryName(tag)] };
}

function parseLayoutOnly(text: string, input: string): { path: string; tag?: string } {
  const reference = parseReference(text, { bare: "layout" });
  if (reference.transport !== "oci-layout") {
    throw new RociError(
      "UNSUPPORTED_TRANSPORT",
      `${input}: roci writes OCI layouts and archives, not ${reference.transport} yet`,
      {
        subject: input,
        hint: "name a directory PATH[:TAG[,TAG…]], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]",
      },
    );
  }
  if (reference.digest !== undefined) {
    throw new RociError("USAGE", `${input}: a destination takes tags, not a digest`, { subject: input });
  }
  return { path: reference.path, ...(reference.tag === undefined ? {} : { tag: reference.tag }) };
}

/** Refuses to start a writing command under --read-only / ROCI_READ_ONLY. */
export function refuseIfReadOnly(context: CliContext, command: string): void {
  if (context.readOnly) {
    throw new RociError(
      "READ_ONLY",
      `roci ${command}: refusing to write, --read-only is set (or ROCI_READ_ONLY)`,
      {
        hint: "drop --read-only (and unset ROCI_READ_ONLY) to let this command write",
      },
    );
  }
}

export function storeOptions(context: CliContext) {
  return {
    onWarning: context.warn,
    onDebug: context.debug ? (message: string) => context.warn(`debug: ${message}`) : undefined,
  };
}

export async function openWritable(path: string, context: CliContext, command: string): Promise<LayoutStore> {
  refuseIfReadOnly(context, command);
  return LayoutStore.open(path, storeOptions(context));
}
