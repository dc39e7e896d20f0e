/**
 * From what a user typed to a store and a selector inside it. Every input is opened read-only;
 * there is no other way to open one here.
 */
import { stat } from "node:fs/promises";
import { RociError } from "../errors.ts";
import { formatReference, type ImageReference, parseReference } from "../reference/reference.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import type { Selector } from "../store/store.ts";
import type { CliContext } from "./context.ts";

export interface Opened {
  store: LayoutReader;
  selector: Selector;
  reference: ImageReference;
}

/**
 * Parses a reference. Bare input is a layout path when it looks like one (starts with `/`, `.`
 * or `~`) or names something on disk; otherwise it is a registry reference.
 */
export async function parseUserReference(input: string): Promise<ImageReference> {
  if (transportPrefix.test(input)) return parseReference(input);
  const asLayout = parseReference(input, { bare: "layout" });
  if (asLayout.transport !== "oci-layout") return asLayout;
  if (/^[/.~]/.test(input) || (await exists(asLayout.path))) return asLayout;
  return parseReference(input, { bare: "registry" });
}

const transportPrefix = /^(oci-layout:\/\/|ocidir:\/\/|docker:\/\/|oci:|oci-archive:|docker-archive:)/;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function openReference(input: string, context: CliContext): Promise<Opened> {
  const reference = await parseUserReference(input);
  switch (reference.transport) {
    case "oci-layout": {
      const store = await LayoutReader.open(reference.path, { onWarning: context.warn });
      return { store, selector: { tag: reference.tag, digest: reference.digest }, reference };
    }
    case "oci-archive":
    case "docker-archive":
      throw new RociError(
        "UNSUPPORTED_TRANSPORT",
        `${formatReference(reference)}: reading ${reference.transport} tar files is not supported yet`,
        { subject: input, hint: "extract the archive into a directory and name that directory" },
      );
    case "registry":
      throw new RociError(
        "UNSUPPORTED_TRANSPORT",
        `${input}: registry references are not supported yet, and no layout directory has that name`,
        {
          subject: input,
          hint: "name an OCI layout directory: PATH, oci-layout://PATH[:TAG][@DIGEST] or oci:PATH[:TAG]",
        },
      );
    default:
      throw new RociError("INTERNAL", `${input}: unknown transport`);
  }
}

/** Opens a whole layout (for ls, tags, verify); a tag or digest in the input is refused. */
export async function openLayout(input: string, context: CliContext): Promise<LayoutReader> {
  const opened = await openReference(input, context);
  if (opened.selector.tag !== undefined || opened.selector.digest !== undefined) {
    throw new RociError("USAGE", `${input}: this command takes a layout, not an image in it`, {
      subject: input,
      hint: `drop the :TAG or @DIGEST, e.g. ${opened.store.location}`,
    });
  }
  return opened.store;
}
