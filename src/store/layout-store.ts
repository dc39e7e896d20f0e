/**
 * A layout that roci writes (DESIGN.md "Write discipline"). Blobs stream into a temp file inside the
 * layout, are verified while written, fsynced, made read-only and renamed into place; an existing
 * blob is verified, never rewritten. `index.json` changes only under the exclusive lock buildkit
 * also takes, as read → modify → write temp → fsync → rename → fsync directory, so readers see the
 * old or the new index, never half of one, and a crash leaves no partial file under its real name.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import {
  access,
  chmod,
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rmdir,
  stat,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { requireVerifiable } from "../digest/digest.ts";
import { checkContent, checkSize, copyFileVerified, hashFile, VerifyingStream } from "../digest/hash.ts";
import { errnoOf, isReadOnlyErrno, RociError } from "../errors.ts";
import { type Descriptor, type ImageIndex, parseIndex } from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import { LayoutReader, type LayoutReaderOptions } from "./layout-reader.ts";
import { EXCLUSIVE_FILE, FLOCK_FILE, lockIndex } from "./lock.ts";
import { type EntryName, formatEntryName, hasName, namedEntry, refuseTaken } from "./naming.ts";
import type { BlobEntry } from "./store.ts";

/** Where blobs are written before they are renamed into place: inside the layout, so rename is atomic. */
export const tempDirName = ".roci-tmp";
const layoutHeader = `${JSON.stringify({ imageLayoutVersion: "1.0.0" })}\n`;
const emptyIndex: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };

export interface LayoutStoreOptions extends LayoutReaderOptions {
  /** How long to wait for another writer's lock on index.json (default 30 s). */
  lockTimeoutMs?: number;
  onDebug?: (message: string) => void;
}

/** How a blob arrived: hard-linked from a local file, copied (reflinked where the filesystem can), or already there. */
export type PushOutcome = "linked" | "copied" | "exists";

export class LayoutStore extends LayoutReader {
  readonly #options: LayoutStoreOptions;

  private constructor(root: string, options: LayoutStoreOptions) {
    super(root, options);
    this.#options = options;
  }

  /** Opens an existing layout for writing; refuses one it cannot write, before writing anything. */
  static override async open(root: string, options: LayoutStoreOptions = {}): Promise<LayoutStore> {
    await LayoutReader.check(root);
    await requireWritable(root);
    return new LayoutStore(root, options);
  }

  /**
   * Creates a layout in a new or empty directory. An existing layout, or other files, make it
   * refuse, unless `force`: then whatever is there is kept, untouched, and the layout is completed.
   */
  static async init(
    root: string,
    options: LayoutStoreOptions & { force?: boolean } = {},
  ): Promise<LayoutStore> {
    const entries = await listDirectory(root);
    const isLayout = entries.includes("oci-layout");
    if (entries.length > 0 && !options.force) {
      throw new RociError(
        "CONFLICT",
        isLayout ? `${root}: is already an OCI layout` : `${root}: is not empty (${entries.length} entries)`,
        {
          subject: root,
          hint: isLayout
            ? "use it as it is, or pass --force (keeps its images)"
            : "choose an empty or new directory, or pass --force to add a layout beside the files there (they are kept)",
        },
      );
    }
    return LayoutStore.#complete(root, options);
  }

  /**
   * Opens a layout for writing, creating it when the directory is missing or holds nothing but a
   * layout being created — several writers may race to create one destination, and all succeed.
   */
  static async openOrInit(root: string, options: LayoutStoreOptions = {}): Promise<LayoutStore> {
    const entries = await listDirectory(root);
    if (entries.includes("oci-layout") || !entries.every(isLayoutEntry)) {
      return LayoutStore.open(root, options);
    }
    return LayoutStore.#complete(root, options);
  }

  /**
   * Makes `root` a layout, idempotently and safely under concurrency: `oci-layout` first (by
   * rename, same bytes whoever wins), so the directory reads as a layout at once; index.json only
   * if missing (linked into place, which fails if it exists), so a late creator never clobbers a
   * tag another one wrote.
   */
  static async #complete(root: string, options: LayoutStoreOptions): Promise<LayoutStore> {
    await requireWritable(root, await nearestExisting(root));
    try {
      await mkdir(join(root, "blobs", "sha256"), { recursive: true });
      if (
        !(await stat(join(root, "oci-layout")).then(
          () => true,
          () => false,
        ))
      ) {
        await writeFileAtomically(join(root, "oci-layout"), layoutHeader);
      }
    } catch (error) {
      throw writeError(error, root);
    }
    const store = await LayoutStore.open(root, options);
    try {
      await createFileOnce(join(root, "index.json"), `${JSON.stringify(emptyIndex)}\n`);
    } catch (error) {
      throw writeError(error, root);
    }
    return store;
  }

  /** Streams `content` into the layout as `descriptor`'s blob, verifying size and digest as it goes. */
  async push(descriptor: Descriptor, content: Readable): Promise<PushOutcome> {
    const target = this.blobPath(descriptor.digest);
    if (await this.#existingIsValid(descriptor, target)) {
      content.destroy();
      return "exists";
    }
    return this.#ingest(descriptor, async (temp) => {
      const out = (await open(temp, "wx", 0o644)).createWriteStream();
      await pipeline(content, new VerifyingStream(descriptor, `blob ${descriptor.digest}`), out);
      return "copied";
    });
  }

  /**
   * Adds a blob from a local file, the cheapest correct way: a hard link when the source is a
   * read-only file on the same filesystem, a reflink where the filesystem can, else a copy that
   * reads, hashes and writes in one pass. Whatever lands is verified before it is renamed into
   * place — with `trustLinks`, a hard link is taken on its size alone (no byte moves; `verify`
   * and every reader still check it).
   */
  async pushFile(
    descriptor: Descriptor,
    source: string,
    options: { trustLinks?: boolean } = {},
  ): Promise<PushOutcome> {
    const target = this.blobPath(descriptor.digest);
    if (await this.#existingIsValid(descriptor, target)) return "exists";
    const info = await stat(source).catch((error: unknown) => {
      throw errnoOf(error) === "ENOENT"
        ? new RociError("BLOB_MISSING", `blob ${descriptor.digest}: missing from the source (${source})`, {
            subject: descriptor.digest,
          })
        : writeError(error, source);
    });
    checkSize(descriptor, info.size, `blob ${descriptor.digest}: source ${source}`);
    return this.#ingest(descriptor, async (temp) => {
      // Link only files nobody can write: a link shares the inode, so later writes would show through.
      if ((info.mode & 0o222) === 0 && (await tryLink(source, temp))) {
        if (!options.trustLinks) await verifyFile(descriptor, temp);
        return "linked";
      }
      if (await tryClone(source, temp)) await verifyFile(descriptor, temp);
      else await copyFileVerified(source, temp, descriptor, `blob ${descriptor.digest} (${source})`);
      return "copied";
    });
  }

  /** Adds a blob from a byte range of a local file (a blob inside an archive), copied and verified in one pass. */
  async pushRange(descriptor: Descriptor, entry: BlobEntry): Promise<PushOutcome> {
    if (await this.#existingIsValid(descriptor, this.blobPath(descriptor.digest))) return "exists";
    const where = `blob ${descriptor.digest} (${entry.path} at byte ${entry.offset})`;
    return this.#ingest(descriptor, async (temp) => {
      await copyFileVerified(entry.path, temp, descriptor, where, {
        offset: entry.offset,
        length: entry.size,
      });
      return "copied";
    });
  }

  /** Changes index.json under the exclusive lock; `change` edits the manifests list in place. */
  async updateIndex(change: (manifests: Descriptor[]) => void): Promise<void> {
    await this.withIndexLock(async () => {
      const path = join(this.location, "index.json");
      let index: ImageIndex;
      try {
        index = parseIndex(await readFile(path), path).value;
      } catch (error) {
        if (errnoOf(error) !== "ENOENT") throw error;
        index = structuredClone(emptyIndex);
      }
      change(index.manifests);
      // Keep the mode another tool chose (umoci writes 0600, skopeo 0644).
      const mode = await stat(path).then(
        (info) => info.mode & 0o7777,
        () => 0o644,
      );
      await writeFileAtomically(path, `${JSON.stringify(index)}\n`, mode);
    });
  }

  /** Runs `work` holding the exclusive lock on index.json (the lock buildkit takes too). */
  async withIndexLock<T>(work: () => Promise<T>): Promise<T> {
    const lock = await lockIndex(this.location, {
      timeoutMs: this.#options.lockTimeoutMs,
      onDebug: this.#options.onDebug,
    });
    try {
      return await work();
    } catch (error) {
      throw writeError(error, this.location);
    } finally {
      await lock.release();
    }
  }

  /**
   * Names `descriptor` with each of `names`, in one index update. A name moves: entries that carried
   * it lose it, and an entry left with no name is dropped (its blobs stay until gc).
   */
  async tag(
    descriptor: Descriptor,
    names: readonly EntryName[],
    options: { noClobber?: boolean } = {},
  ): Promise<void> {
    await this.updateIndex((manifests) => {
      if (options.noClobber) refuseTaken(manifests, names, descriptor.digest, this.location);
      for (const name of names) {
        removeName(manifests, name);
        manifests.push(namedEntry(descriptor, name));
      }
    });
  }

  /** Removes a name; TAG_NOT_FOUND when no entry carries it. */
  async untag(name: EntryName): Promise<void> {
    await this.updateIndex((manifests) => {
      if (!removeName(manifests, name)) {
        throw new RociError(
          "TAG_NOT_FOUND",
          `layout ${this.location}: no entry is named "${formatEntryName(name)}"`,
          {
            subject: formatEntryName(name),
          },
        );
      }
    });
  }

  async #existingIsValid(descriptor: Descriptor, target: string): Promise<boolean> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(target);
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return false;
      throw writeError(error, target);
    }
    if (info.size !== descriptor.size) return false;
    try {
      await verifyFile(descriptor, target);
    } catch {
      this.#options.onDebug?.(`blob ${descriptor.digest} in ${this.location} is corrupt; replacing it`);
      return false;
    }
    // Refresh its time so a concurrent gc's grace period protects a blob a new image now relies on —
    // unless it is a hard link: then the inode is also some input's, and inputs are never touched.
    if (info.nlink === 1) {
      const now = new Date();
      await utimes(target, now, now).catch(() => {});
    }
    return true;
  }

  /** Runs `write` on a fresh temp path, then fsyncs it, makes it read-only and renames it into place. */
  async #ingest(descriptor: Descriptor, write: (temp: string) => Promise<PushOutcome>): Promise<PushOutcome> {
    const target = this.blobPath(descriptor.digest);
    const { encoded } = requireVerifiable(descriptor.digest);
    const tempDir = join(this.location, tempDirName);
    const temp = join(tempDir, `${encoded.slice(0, 16)}.${process.pid}.${randomBytes(6).toString("hex")}`);
    try {
      // Another writer may remove the empty temp directory between our mkdir and our create:
      // creating the temp file fails with ENOENT before any content is consumed, so try again.
      let outcome: PushOutcome;
      for (let attempt = 1; ; attempt++) {
        try {
          await mkdir(tempDir, { recursive: true });
          outcome = await write(temp);
          break;
        } catch (error) {
          const created = await stat(temp).then(
            () => true,
            () => false,
          );
          if (errnoOf(error) !== "ENOENT" || attempt >= 10 || created) throw error;
        }
      }
      // A link is the source's own inode: already read-only and on disk, and not ours to chmod.
      if (outcome !== "linked") {
        await sync(temp);
        await chmod(temp, 0o444);
      }
      await mkdir(dirname(target), { recursive: true });
      await rename(temp, target);
      await sync(dirname(target));
      return outcome;
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw writeError(error, target);
    } finally {
      // Removed when empty; a concurrent writer's file keeps it (ENOTEMPTY), and it recreates it if needed.
      await rmdir(tempDir).catch(() => {});
    }
  }
}

/** A hard link, or false where the filesystem or permissions do not allow one (then copy instead). */
async function tryLink(source: string, target: string): Promise<boolean> {
  try {
    await link(source, target);
    return true;
  } catch (error) {
    if (["EXDEV", "EPERM", "EMLINK", "ENOTSUP", "EACCES"].includes(errnoOf(error) ?? "")) return false;
    throw error;
  }
}

/** A reflink (copy-on-write clone), or false where the filesystem cannot make one. */
async function tryClone(source: string, target: string): Promise<boolean> {
  try {
    await copyFile(source, target, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch (error) {
    if (errnoOf(error) === "ENOENT") throw error;
    await unlink(target).catch(() => {});
    return false;
  }
}

function removeName(manifests: Descriptor[], name: EntryName): boolean {
  let removed = false;
  for (let i = manifests.length - 1; i >= 0; i--) {
    if (hasName(manifests[i]!, name)) {
      manifests.splice(i, 1);
      removed = true;
    }
  }
  return removed;
}

async function verifyFile(descriptor: Descriptor, path: string): Promise<void> {
  const { algorithm } = requireVerifiable(descriptor.digest);
  // One byte more than promised is enough to tell a longer file.
  const actual = await hashFile(path, algorithm, { length: descriptor.size + 1 });
  checkContent(descriptor, actual, `blob ${descriptor.digest} (${path})`);
}

/** fsync of a file, or of a directory (which makes a rename in it durable). */
async function sync(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a small file by temp + fsync + rename + directory fsync. */
export async function writeFileAtomically(path: string, content: string, mode = 0o644): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temp, content, { flag: "wx", mode });
    await sync(temp);
    await rename(temp, path);
    await sync(dirname(path));
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}

/** What a layout directory holds while roci creates it (anything else means it is someone's directory). */
const layoutEntries = new Set(["oci-layout", "index.json", "blobs", tempDirName, FLOCK_FILE, EXCLUSIVE_FILE]);

function isLayoutEntry(name: string): boolean {
  // Also the temp files a concurrent creator is renaming into place.
  return layoutEntries.has(name) || /^(oci-layout|index\.json)\.\d+\.[0-9a-f]+\.tmp$/.test(name);
}

/** The names in a directory; none when it does not exist yet. */
async function listDirectory(root: string): Promise<string[]> {
  try {
    return await readdir(root);
  } catch (error) {
    if (errnoOf(error) === "ENOTDIR") {
      throw new RociError("INVALID_LAYOUT", `${root}: is a file, not a directory`, { subject: root });
    }
    if (errnoOf(error) === "ENOENT") return [];
    throw writeError(error, root);
  }
}

/** The path itself, or its closest ancestor that exists: where a new directory would be created. */
async function nearestExisting(path: string): Promise<string> {
  for (let current = path; ; current = dirname(current)) {
    if (
      await stat(current).then(
        () => true,
        () => false,
      )
    )
      return current;
    if (dirname(current) === current) return current;
  }
}

/** Creates a small file with its content, atomically, unless it exists already (then leaves it be). */
async function createFileOnce(path: string, content: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temp, content, { flag: "wx", mode: 0o644 });
    await sync(temp);
    await link(temp, path).catch((error: unknown) => {
      if (errnoOf(error) !== "EEXIST") throw error;
    });
    await sync(dirname(path));
  } finally {
    await unlink(temp).catch(() => {});
  }
}

/** Refuses a destination the process cannot write, before any write: access(2) asks, it does not try. */
export async function requireWritable(root: string, directory = root): Promise<void> {
  try {
    await access(directory, constants.W_OK);
  } catch (error) {
    throw writeError(error, directory === root ? root : `${root} (in ${directory})`);
  }
}

function writeError(error: unknown, path: string): RociError {
  if (error instanceof RociError) return error;
  if (isReadOnlyErrno(error)) {
    return new RociError("READ_ONLY", `${path}: read-only destination (${errnoOf(error)})`, {
      subject: path,
      cause: error,
      hint: "write to a directory this user can write, on a read-write filesystem",
    });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new RociError("IO", `${path}: ${detail}`, { subject: path, cause: error });
}
