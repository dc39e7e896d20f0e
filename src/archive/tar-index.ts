/**
 * An index of an uncompressed tar FILE, made in one pass over its headers with positioned reads:
 * read a header block, decode it (with its PAX or GNU long-name entries), then jump over the body to
 * the next header. Bodies are never read, so indexing a 1 GiB archive of a few blobs costs a handful
 * of reads. Entries are kept by normalised name (last one wins, as extraction would leave it) with
 * where their bytes are, so a store can serve them by offset without extracting anything.
 *
 * Lookups resolve symlink and hard-link entries WITHIN the archive, never on the filesystem: a
 * symlink target is taken relative to the link's directory, an absolute one relative to the archive
 * root; leaving the root is UNSAFE_PATH, more than 40 hops CORRUPT_ARCHIVE. Entries named with a `..`
 * component or an absolute path are recorded as unsafe, and looking one up is UNSAFE_PATH.
 */
import { open } from "node:fs/promises";
import { RociError } from "../errors.ts";
import {
  BLOCK_SIZE,
  decodeHeader,
  entryType,
  headerPath,
  isZeroBlock,
  type TarEntryType,
} from "../tar/header.ts";
import { DEFAULT_MAX_META_SIZE, decodePax, PAX_SPARSE_PREFIX, paxText } from "../tar/pax.ts";

/** Symlink hops a lookup follows before giving up (Linux's MAXSYMLINKS). */
export const maxLinkHops = 40;

export interface TarIndexEntry {
  /** The normalised name (no `./`, no `//`, no trailing `/`); unsafe names keep their `..` parts. */
  readonly name: string;
  /** The name exactly as recorded (PAX path, GNU long name or USTAR prefix/name), for messages. */
  readonly rawName: string;
  readonly type: TarEntryType;
  /** The type flag as recorded (`"\0"` is an old-style file; `"S"` a GNU sparse file). */
  readonly typeflag: string;
  /** Byte offset of the entry's own header block (after any PAX or GNU metadata entries). */
  readonly headerOffset: number;
  /** Byte offset of the first body byte. */
  readonly dataOffset: number;
  /** Body bytes; 0 for links, directories and devices. */
  readonly size: number;
  /** Link target as recorded (PAX linkpath, GNU long link, or the linkname field). */
  readonly linkname: string;
  /** Permission bits (`& 0o7777`). */
  readonly mode: number;
  /** True when the recorded name is absolute or has a `..` component. */
  readonly unsafe: boolean;
  /** True for a GNU or PAX sparse file, whose body is not its content. */
  readonly sparse: boolean;
}

/** A regular-file entry a lookup ended at, and the name it was asked by. */
export interface ResolvedEntry {
  /** The name that was looked up (normalised). */
  readonly name: string;
  /** The regular-file entry holding the bytes (the same entry when no link was followed). */
  readonly entry: TarIndexEntry;
  readonly dataOffset: number;
  readonly size: number;
  /** The link entries followed on the way, in order (empty when `name` is the file itself). */
  readonly via: readonly TarIndexEntry[];
}

export interface TarIndex {
  /** The file indexed (a temp file when the archive was compressed). */
  readonly file: string;
  /** The archive as the user named it, for messages. */
  readonly archive: string;
  /** Bytes in `file`. */
  readonly fileSize: number;
  /** Every entry, by normalised name, in archive order of their last occurrence. */
  readonly entries: ReadonlyMap<string, TarIndexEntry>;
  /** The entry recorded under `name` (normalised first), without following links. */
  get(name: string): TarIndexEntry | undefined;
  /**
   * The regular file `name` names, following symlinks (also in parent directories) and hard links
   * within the archive. Throws NOT_FOUND (no such entry, or a link to a missing one), UNSAFE_PATH
   * (an unsafe name, or a link leaving the archive), CORRUPT_ARCHIVE (a link loop) and
   * INVALID_LAYOUT (a directory or a device where a file is expected). Every message names the
   * archive and the entry.
   */
  lookup(name: string): ResolvedEntry;
  /** Like `lookup`, but `undefined` when `name` itself is not in the archive (a broken link still throws). */
  find(name: string): ResolvedEntry | undefined;
  /**
   * Every non-directory entry below directory `dir` (symlinked directories followed), as paths
   * relative to `dir`, sorted. Unsafe entries are left out.
   */
  list(dir: string): string[];
}

export interface IndexTarOptions {
  /** The archive name used in messages (default: `path`), e.g. the compressed original. */
  archive?: string;
  /** Largest PAX or GNU long-name entry accepted (default 1 MiB). */
  maxMetaSize?: number;
}

interface NormalisedName {
  key: string;
  unsafe: boolean;
}

/**
 * The name an entry is kept under: leading `/` and `./` removed, `//` collapsed, `.` components and
 * trailing `/` dropped. `..` components are kept (and make the name unsafe), as does a leading `/`.
 */
export function normaliseEntryName(name: string): NormalisedName {
  const absolute = name.startsWith("/");
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  return { key: parts.join("/"), unsafe: absolute || parts.includes("..") };
}

function corrupt(archive: string, message: string): RociError {
  return new RociError("CORRUPT_ARCHIVE", `${archive}: ${message}`, {
    subject: archive,
    hint: "the archive is damaged or not a tar file; produce it again",
  });
}

/** Reads blocks at arbitrary offsets through a small window, so runs of small entries cost one read. */
class BlockReader {
  readonly #handle: Awaited<ReturnType<typeof open>>;
  readonly #size: number;
  #window: Buffer = Buffer.alloc(0);
  #windowStart = 0;
  static readonly windowSize = 64 * 1024;

  constructor(handle: Awaited<ReturnType<typeof open>>, size: number) {
    this.#handle = handle;
    this.#size = size;
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file). */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.#size);
    if (offset >= end) return Buffer.alloc(0);
    const windowEnd = this.#windowStart + this.#window.length;
    if (offset >= this.#windowStart && end <= windowEnd) {
      return this.#window.subarray(offset - this.#windowStart, end - this.#windowStart);
    }
    const want = end - offset;
    if (want > BlockReader.windowSize) return this.#readExactly(offset, want);
    const span = Math.min(BlockReader.windowSize, this.#size - offset);
    this.#window = await this.#readExactly(offset, span);
    this.#windowStart = offset;
    return this.#window.subarray(0, want);
  }

  async #readExactly(offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.#handle.read(buffer, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buffer.subarray(0, got);
  }
}

const metaNames: Record<string, string> = {
  x: "PAX extended header",
  g: "PAX global header",
  L: "GNU long name",
  K: "GNU long link",
};

/** Entry types whose size field says nothing about a body (as the streaming reader reads them). */
const headerOnly: ReadonlySet<TarEntryType> = new Set(["link", "symlink", "char", "block", "dir", "fifo"]);

function padded(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
}

function parseSize(text: string, archive: string, at: number): number {
  if (!/^[0-9]{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw corrupt(archive, `invalid PAX size ${JSON.stringify(text)} in the header at byte ${at}`);
  }
  return Number(text);
}

/** Indexes the tar file at `path` in one pass over its headers. */
export async function indexTar(path: string, options: IndexTarOptions = {}): Promise<TarIndex> {
  const archive = options.archive ?? path;
  const maxMeta = options.maxMetaSize ?? DEFAULT_MAX_META_SIZE;
  const handle = await open(path, "r");
  try {
    const fileSize = (await handle.stat()).size;
    const reader = new BlockReader(handle, fileSize);
    const entries = new Map<string, TarIndexEntry>();
    /** For each hard link, the entry its target name held when the link was recorded. */
    const hardTargets = new Map<TarIndexEntry, TarIndexEntry>();
    const global = new Map<string, string>();
    let local = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    let offset = 0;
    for (;;) {
      const block = await reader.read(offset, BLOCK_SIZE);
      if (block.length === 0) break;
      if (block.length < BLOCK_SIZE) {
        // A cut-off run of zero padding is the end too; anything else was a header.
        if (isZeroBlock(block)) break;
        throw corrupt(archive, `truncated at byte ${fileSize} (the header at byte ${offset})`);
      }
      let raw: ReturnType<typeof decodeHeader>;
      try {
        raw = decodeHeader(block, offset);
      } catch (error) {
        throw corrupt(archive, error instanceof Error ? error.message : String(error));
      }
      if (raw === "zero") {
        const next = await reader.read(offset + BLOCK_SIZE, BLOCK_SIZE);
        if (next.length > 0 && !isZeroBlock(next)) {
          throw corrupt(
            archive,
            `a lone zero block at byte ${offset} is followed by more data at byte ${offset + BLOCK_SIZE}`,
          );
        }
        break;
      }
      const recordedPath = headerPath(raw);
      if (raw.size < 0)
        throw corrupt(archive, `negative size in the header at byte ${offset} (entry ${recordedPath})`);
      const metaName = metaNames[raw.typeflag];
      if (metaName !== undefined) {
        if (raw.size > maxMeta) {
          throw corrupt(
            archive,
            `${metaName} of ${raw.size} bytes at byte ${offset} exceeds the limit of ${maxMeta} bytes`,
          );
        }
        const dataOffset = offset + BLOCK_SIZE;
        const data = Buffer.from(await reader.read(dataOffset, raw.size));
        if (data.length < raw.size) {
          throw corrupt(archive, `truncated at byte ${fileSize} (entry ${recordedPath}, a ${metaName})`);
        }
        if (raw.typeflag === "x" || raw.typeflag === "g") {
          let records: Map<string, Buffer>;
          try {
            records = decodePax(data, offset);
          } catch (error) {
            throw corrupt(archive, error instanceof Error ? error.message : String(error));
          }
          for (const [key, value] of records) {
            const text = paxText(value);
            if (raw.typeflag === "x") local.set(key, text);
            else if (text === "") global.delete(key);
            else global.set(key, text);
          }
        } else {
          const nul = data.indexOf(0);
          const text = paxText(nul < 0 ? data : data.subarray(0, nul));
          if (raw.typeflag === "L") longName = text;
          else longLink = text;
        }
        offset = dataOffset + padded(raw.size);
        continue;
      }

      const records = new Map(global);
      for (const [key, value] of local) {
        if (value === "") records.delete(key);
        else records.set(key, value);
      }
      const rawName = records.get("path") ?? longName ?? recordedPath;
      const linkname = records.get("linkpath") ?? longLink ?? raw.linkname;
      let size = raw.size;
      const paxSize = records.get("size");
      if (paxSize !== undefined) size = parseSize(paxSize, archive, offset);
      let type = entryType(raw.typeflag);
      if (raw.typeflag === "\0" && rawName.endsWith("/")) type = "dir";
      if (headerOnly.has(type)) size = 0;
      const sparse =
        raw.typeflag === "S" || [...records.keys()].some((key) => key.startsWith(PAX_SPARSE_PREFIX));
      local = new Map();
      longName = undefined;
      longLink = undefined;

      const dataOffset = offset + BLOCK_SIZE;
      if (dataOffset + size > fileSize) {
        throw corrupt(archive, `truncated at byte ${fileSize} (entry ${rawName})`);
      }
      const { key, unsafe } = normaliseEntryName(rawName);
      if (key !== "" || unsafe) {
        const entry: TarIndexEntry = {
          name: key,
          rawName,
          type,
          typeflag: raw.typeflag,
          headerOffset: offset,
          dataOffset,
          size,
          linkname,
          mode: raw.mode & 0o7777,
          unsafe,
          sparse,
        };
        if (type === "link") {
          // An unsafe target is left to lookups to refuse; a safe one is the member as it is now.
          const target = normaliseEntryName(linkname);
          const current = target.unsafe ? undefined : entries.get(target.key);
          if (current) hardTargets.set(entry, current);
        }
        // Last one wins; delete first so iteration order follows the last occurrence.
        entries.delete(key);
        entries.set(key, entry);
      }
      offset = dataOffset + padded(size);
    }
    return new Index(path, archive, fileSize, entries, hardTargets);
  } finally {
    await handle.close();
  }
}

class Index implements TarIndex {
  readonly file: string;
  readonly archive: string;
  readonly fileSize: number;
  readonly entries: ReadonlyMap<string, TarIndexEntry>;
  readonly #hardTargets: ReadonlyMap<TarIndexEntry, TarIndexEntry>;

  constructor(
    file: string,
    archive: string,
    fileSize: number,
    entries: ReadonlyMap<string, TarIndexEntry>,
    hardTargets: ReadonlyMap<TarIndexEntry, TarIndexEntry>,
  ) {
    this.file = file;
    this.archive = archive;
    this.fileSize = fileSize;
    this.entries = entries;
    this.#hardTargets = hardTargets;
  }

  get(name: string): TarIndexEntry | undefined {
    return this.entries.get(normaliseEntryName(name).key);
  }

  lookup(name: string): ResolvedEntry {
    const found = this.find(name);
    if (found) return found;
    throw new RociError("NOT_FOUND", `${this.archive}: no entry ${name} in the archive`, { subject: name });
  }

  find(name: string): ResolvedEntry | undefined {
    const { key } = this.#checkName(name, name);
    const via: TarIndexEntry[] = [];
    const start = this.#resolve(key, name, via);
    let entry = start.entry;
    if (entry === undefined) {
      if (this.#isImplicitDirectory(start.name)) throw this.#notFile(name, "a directory", via);
      if (via.length === 0) return undefined;
      throw this.#missing(name, via[via.length - 1] as TarIndexEntry);
    }
    // A hard link names an archive member by its exact name (no symlinks in between).
    while (entry.type === "link") {
      via.push(entry);
      this.#hop(via, name);
      const target: TarIndexEntry = this.#hardTargets.get(entry) ?? this.#hardTarget(entry, name);
      entry = target;
      if (entry.type === "symlink") {
        // A hard link to a symlink behaves as that symlink, resolved from where it was recorded.
        entry = this.#resolve(entry.name, name, via).entry;
        if (entry === undefined) throw this.#missing(name, via[via.length - 1] as TarIndexEntry);
      }
    }
    if (entry.type !== "file" || entry.sparse) {
      throw this.#notFile(name, entry.sparse ? "a sparse file" : typeNames[entry.type], via);
    }
    return { name: key, entry, dataOffset: entry.dataOffset, size: entry.size, via };
  }

  list(dir: string): string[] {
    const { key } = this.#checkName(dir, dir);
    const base = this.#resolveDirectory(key, dir);
    if (base === undefined) return [];
    const names: string[] = [];
    const visit = (real: string, relative: string, seen: ReadonlySet<string>): void => {
      for (const child of [...(this.#children().get(real) ?? [])].sort()) {
        const name = real === "" ? child : `${real}/${child}`;
        const path = relative === "" ? child : `${relative}/${child}`;
        const entry = this.entries.get(name);
        if (entry?.unsafe) continue;
        if (entry === undefined || entry.type === "dir") {
          if (!seen.has(name)) visit(name, path, new Set([...seen, name]));
          continue;
        }
        if (entry.type === "symlink") {
          let target: string | undefined;
          try {
            target = this.#resolveDirectory(name, name);
          } catch {
            target = undefined; // a broken or escaping link is listed; reading it reports why
          }
          if (target !== undefined) {
            if (!seen.has(target)) visit(target, path, new Set([...seen, target]));
            continue;
          }
        }
        names.push(path);
      }
    };
    visit(base, "", new Set([base]));
    return names.sort();
  }

  #childMap: Map<string, Set<string>> | undefined;

  /** Direct children of every directory (explicit or implied by a deeper name), safe names only. */
  #children(): Map<string, Set<string>> {
    if (this.#childMap) return this.#childMap;
    const map = new Map<string, Set<string>>();
    for (const entry of this.entries.values()) {
      if (entry.unsafe) continue;
      const parts = entry.name.split("/");
      for (let i = 0; i < parts.length; i++) {
        const parent = parts.slice(0, i).join("/");
        let set = map.get(parent);
        if (!set) {
          set = new Set();
          map.set(parent, set);
        }
        set.add(parts[i] as string);
      }
    }
    this.#childMap = map;
    return map;
  }

  #isImplicitDirectory(name: string): boolean {
    return this.#children().has(name);
  }

  #notFile(asked: string, what: string, via: readonly TarIndexEntry[]): RociError {
    const through = via.length > 0 ? ` (reached through ${describeChain(via)})` : "";
    return new RociError(
      "INVALID_LAYOUT",
      `${this.archive}: entry ${asked} is ${what}, not a regular file${through}`,
      { subject: asked },
    );
  }

  /** Refuses names that could never be safe to look up. */
  #checkName(name: string, asked: string): NormalisedName {
    const normalised = normaliseEntryName(name);
    const entry = this.entries.get(normalised.key);
    if (normalised.unsafe || entry?.unsafe) {
      throw new RociError(
        "UNSAFE_PATH",
        `${this.archive}: entry ${entry?.rawName ?? asked} has an absolute path or a ".." component; refusing to read it`,
        { subject: asked, hint: "entries of an image archive are relative paths inside it" },
      );
    }
    return normalised;
  }

  #hop(via: readonly TarIndexEntry[], asked: string): void {
    if (via.length > maxLinkHops) {
      throw new RociError(
        "CORRUPT_ARCHIVE",
        `${this.archive}: entry ${asked}: more than ${maxLinkHops} links followed (a link loop?): ${describeChain(via.slice(0, 4))} …`,
        { subject: asked },
      );
    }
  }

  #hardTarget(link: TarIndexEntry, asked: string): TarIndexEntry {
    const { key, unsafe } = normaliseEntryName(link.linkname);
    if (unsafe) {
      throw new RociError(
        "UNSAFE_PATH",
        `${this.archive}: entry ${asked}: hard link ${link.rawName} → ${link.linkname} points outside the archive`,
        { subject: asked, hint: "links inside an image archive must stay inside it" },
      );
    }
    const target = this.entries.get(key);
    if (target === undefined || target === link) throw this.#missing(asked, link);
    return target;
  }

  #missing(asked: string, link: TarIndexEntry): RociError {
    const kind = link.type === "link" ? "a hard link" : "a symlink";
    const message =
      link.name === normaliseEntryName(asked).key
        ? `${this.archive}: entry ${asked} is ${kind} to ${link.linkname}, which is not in the archive`
        : `${this.archive}: entry ${asked}: ${link.rawName} is ${kind} to ${link.linkname}, which is not in the archive`;
    return new RociError("NOT_FOUND", message, { subject: asked });
  }

  /**
   * Walks `key` component by component, replacing every symlink met (in a parent directory or at
   * the end) by its target, relative to the link's directory (absolute: to the archive root).
   * Returns the link-free name reached and its entry (undefined when nothing is recorded there).
   * Throws UNSAFE_PATH when a link leaves the archive, CORRUPT_ARCHIVE after too many hops.
   */
  #resolve(
    key: string,
    asked: string,
    via: TarIndexEntry[],
  ): { name: string; entry: TarIndexEntry | undefined } {
    let pending = key === "" ? [] : key.split("/");
    let done: string[] = [];
    let entry: TarIndexEntry | undefined;
    while (pending.length > 0) {
      const part = pending[0] as string;
      const current = done.length === 0 ? part : `${done.join("/")}/${part}`;
      entry = this.entries.get(current);
      if (entry?.unsafe) {
        throw new RociError("UNSAFE_PATH", `${this.archive}: entry ${entry.rawName} is not a safe path`, {
          subject: asked,
        });
      }
      if (entry?.type === "symlink") {
        via.push(entry);
        this.#hop(via, asked);
        const target = entry.linkname;
        const joined: string[] = target.startsWith("/") ? [] : [...done];
        for (const piece of target.split("/")) {
          if (piece === "" || piece === ".") continue;
          if (piece !== "..") {
            joined.push(piece);
          } else if (joined.pop() === undefined) {
            throw new RociError(
              "UNSAFE_PATH",
              `${this.archive}: entry ${asked}: symlink ${entry.rawName} → ${target} points outside the archive`,
              { subject: asked, hint: "links inside an image archive must stay inside it" },
            );
          }
        }
        done = [];
        pending = [...joined, ...pending.slice(1)];
        entry = undefined;
        continue;
      }
      if (pending.length > 1 && entry !== undefined && entry.type !== "dir") {
        // A file where a directory is needed: nothing lies below it.
        return { name: [...done, ...pending].join("/"), entry: undefined };
      }
      done = [...done, part];
      pending = pending.slice(1);
    }
    return { name: done.join("/"), entry };
  }

  /** The link-free name of directory `key`, or undefined when no such directory is in the archive. */
  #resolveDirectory(key: string, asked: string): string | undefined {
    if (key === "") return "";
    const { name, entry } = this.#resolve(key, asked, []);
    if (entry === undefined) return this.#isImplicitDirectory(name) ? name : undefined;
    return entry.type === "dir" ? name : undefined;
  }
}

const typeNames: Record<TarEntryType, string> = {
  file: "a file",
  link: "a hard link",
  symlink: "a symlink",
  char: "a character device",
  block: "a block device",
  dir: "a directory",
  fifo: "a FIFO",
  unknown: "a special entry",
};

function describeChain(via: readonly TarIndexEntry[]): string {
  return via.map((entry) => `${entry.rawName} → ${entry.linkname}`).join(", ");
}
