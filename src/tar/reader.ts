/**
 * A streaming tar reader for layers: USTAR, PAX (local and global headers), GNU (long names
 * `L`/`K`, base-256 numbers) and V7 archives, one pass, bounded memory.
 *
 * Body bytes are never copied: a body stream hands out subarrays of the source's chunks, and pulls
 * from the source only when it is read, so an unread body stalls the source instead of buffering.
 */
import { Readable } from "node:stream";
import { RociError } from "../errors.ts";
import {
  BLOCK_SIZE,
  decodeHeader,
  entryType,
  headerPath,
  isZeroBlock,
  type RawHeader,
  type TarEntryType,
} from "./header.ts";
import { DEFAULT_MAX_META_SIZE, decodePax, PAX_SPARSE_PREFIX, PAX_XATTR_PREFIX, paxText } from "./pax.ts";

export interface TarHeader {
  /** The path exactly as recorded: PAX `path`, else GNU long name, else USTAR prefix/name. */
  path: string;
  type: TarEntryType;
  /** The type flag as recorded, for "unknown" entries (`"\0"` is an old-style file). */
  typeflag: string;
  /** Permission, setuid, setgid and sticky bits (`& 0o7777`; file-type bits are dropped). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /**
   * Bytes in the body. Always 0 for link, symlink, char, block, dir and fifo entries, whatever the
   * size field says (as Go's archive/tar reads them).
   */
  size: number;
  /** Seconds since the epoch; PAX `mtime` may make it fractional. */
  mtime: number;
  /** Link target: PAX `linkpath`, else GNU long link name, else the linkname field. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.<name>` records, exact bytes. */
  xattrs: Record<string, Buffer>;
  /**
   * Every PAX record that applied (global ones, then the entry's own), values as text, except the
   * `SCHILY.xattr.*` records (see `xattrs`). Empty when the entry has no PAX records.
   */
  pax: Record<string, string>;
}

export interface TarEntry {
  header: TarHeader;
  /** Byte offset in the archive of the entry's own header block (after any PAX/GNU metadata entries). */
  offset: number;
  /** Byte offset in the archive of the first body byte (`offset + 512`). */
  dataOffset: number;
  /**
   * The body, exactly `header.size` bytes. Read it (or ignore it) before asking the generator for
   * the next entry: the reader then skips what was not read. A body read after the generator
   * moved on has been destroyed. If the archive ends inside the body, the body stream errors with
   * CORRUPT_LAYER (and so does the generator, if the body was not read).
   */
  body: Readable;
}

export interface ReadTarOptions {
  /** Largest PAX or GNU long-name metadata entry accepted (default 1 MiB); larger → CORRUPT_LAYER. */
  maxMetaSize?: number;
  /**
   * After the end-of-archive marker, read and discard the rest of the source (default true), so that
   * a hashing stream feeding the reader sees every byte and the source ends normally. When false, the
   * source is released (destroyed if it is a stream) as soon as the marker has been read.
   */
  drainAfterEnd?: boolean;
}

export { DEFAULT_MAX_META_SIZE };

const EMPTY = Buffer.alloc(0);

/** A pull-based byte source over an async iterable of chunks, counting its position. */
class ByteSource {
  private readonly iterator: AsyncIterator<unknown>;
  private chunk: Buffer = EMPTY;
  private ended = false;
  /** Bytes taken out so far: the archive offset of the next byte. */
  position = 0;

  constructor(source: AsyncIterable<unknown>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.chunk.length === 0) {
      if (this.ended) return false;
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      const value = next.value;
      if (Buffer.isBuffer(value)) this.chunk = value;
      else if (value instanceof Uint8Array)
        this.chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      else throw new RociError("INTERNAL", "tar reader: the source must yield Buffers or Uint8Arrays");
    }
    return true;
  }

  /** Up to `max` (> 0) bytes, as a subarray of the current chunk; undefined at the end. */
  async take(max: number): Promise<Buffer | undefined> {
    if (this.chunk.length === 0 && !(await this.fill())) return undefined;
    const n = Math.min(max, this.chunk.length);
    const out = this.chunk.subarray(0, n);
    this.chunk = this.chunk.subarray(n);
    this.position += n;
    return out;
  }

  /** Exactly `n` bytes, or fewer if the source ends; copies only when they span chunks. */
  async read(n: number): Promise<Buffer> {
    if (this.chunk.length >= n) {
      const out = this.chunk.subarray(0, n);
      this.chunk = this.chunk.subarray(n);
      this.position += n;
      return out;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const part = await this.take(n - got);
      if (part === undefined) break;
      parts.push(part);
      got += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
  }

  /** Discards up to `n` bytes; returns how many were there. */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const part = await this.take(n - skipped);
      if (part === undefined) break;
      skipped += part.length;
    }
    return skipped;
  }

  async drain(): Promise<void> {
    while ((await this.take(Number.MAX_SAFE_INTEGER)) !== undefined) {}
  }

  /** Releases the source early (a Readable's iterator destroys the stream). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.chunk = EMPTY;
    await this.iterator.return?.();
  }
}

function corrupt(message: string): RociError {
  return new RociError("CORRUPT_LAYER", message);
}

function describe(path: string): string {
  return JSON.stringify(path);
}

function truncated(path: string, claimed: number, got: number): RociError {
  return corrupt(`truncated: entry ${describe(path)} claims ${claimed} bytes, stream ended after ${got}`);
}

function padding(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

/**
 * A body stream over the next `size` bytes of the source. It pulls one chunk per `_read`, so a body
 * nobody reads never pulls. `settle()` (called by the generator when the consumer moves on) waits
 * for a pull in flight, destroys the stream and skips what is left.
 */
class BodyReader {
  readonly stream: Readable;
  private remaining: number;
  private inflight: Promise<void> | undefined;
  private abandoned = false;
  private failure: Error | undefined;

  constructor(
    private readonly source: ByteSource,
    private readonly path: string,
    private readonly size: number,
  ) {
    this.remaining = size;
    // highWaterMark 0: at most the chunk being handed over is held, and a paused reader's read()
    // returns that one chunk instead of concatenating several (a copy).
    this.stream = new Readable({ highWaterMark: 0, read: () => this.pull() });
    if (size === 0) this.stream.push(null);
  }

  private pull(): void {
    if (this.inflight || this.abandoned || this.remaining === 0) return;
    this.inflight = this.source.take(this.remaining).then(
      (chunk) => {
        this.inflight = undefined;
        if (this.abandoned || this.stream.destroyed) {
          // Nobody wants these bytes any more; settle() skips the rest.
          if (chunk) this.remaining -= chunk.length;
          return;
        }
        if (chunk === undefined) {
          this.failure = truncated(this.path, this.size, this.size - this.remaining);
          this.stream.destroy(this.failure);
          return;
        }
        this.remaining -= chunk.length;
        const more = this.stream.push(chunk);
        if (this.remaining === 0) this.stream.push(null);
        else if (more) this.pull();
      },
      (error: unknown) => {
        this.inflight = undefined;
        this.failure = error instanceof Error ? error : new Error(String(error));
        if (!this.abandoned) this.stream.destroy(this.failure);
      },
    );
  }

  /** Makes sure every body byte has left the source; throws if the source failed or ended early. */
  async settle(): Promise<void> {
    this.abandoned = true;
    if (this.inflight) await this.inflight;
    if (this.failure) throw this.failure;
    if (!this.stream.readableEnded && !this.stream.destroyed) this.stream.destroy();
    if (this.remaining > 0) {
      const skipped = await this.source.skip(this.remaining);
      if (skipped < this.remaining)
        throw truncated(this.path, this.size, this.size - this.remaining + skipped);
      this.remaining = 0;
    }
  }

  /** Stops the stream when the generator is closed early. */
  abort(): void {
    this.abandoned = true;
    if (!this.stream.destroyed) this.stream.destroy();
  }
}

interface Pending {
  local: Map<string, Buffer>;
  longName: string | undefined;
  longLink: string | undefined;
}

const HEADER_ONLY: ReadonlySet<TarEntryType> = new Set(["link", "symlink", "char", "block", "dir", "fifo"]);

function parseInteger(text: string, key: string, at: number): number {
  if (!/^[0-9]{1,16}$/.test(text))
    throw corrupt(`tar entry at byte ${at}: invalid PAX ${key} ${describe(text)}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw corrupt(`tar entry at byte ${at}: PAX ${key} out of range`);
  return value;
}

function parseTime(text: string, at: number): number {
  if (!/^-?[0-9]{1,16}(\.[0-9]*)?$/.test(text)) {
    throw corrupt(`tar entry at byte ${at}: invalid PAX mtime ${describe(text)}`);
  }
  return Number(text);
}

/**
 * Reads a tar archive entry by entry. See `TarEntry.body` for how bodies must be handled.
 *
 * End of archive: two zero blocks (one zero block followed by the end of the stream is accepted
 * too); or the end of the stream right after an entry's data, with or without its padding (umoci
 * 0.4.7 writes no trailer); an empty stream is an empty archive. Bytes after the marker are
 * ignored. A zero block followed by a header, a stream ending inside a header, a body or a metadata
 * entry, a bad checksum, a malformed PAX record and sparse files are CORRUPT_LAYER.
 */
export async function* readTar(
  source: Readable | AsyncIterable<Buffer>,
  options: ReadTarOptions = {},
): AsyncGenerator<TarEntry, void, undefined> {
  const maxMeta = options.maxMetaSize ?? DEFAULT_MAX_META_SIZE;
  const src = new ByteSource(source);
  const global = new Map<string, Buffer>();
  let body: BodyReader | undefined;
  let finished = false;
  try {
    for (;;) {
      const next = await nextHeader(src, global, maxMeta);
      if (next === undefined) break;
      const { header, offset } = next;
      // The body stream is made on first access: listing or skipping costs no stream.
      let current: BodyReader | undefined;
      let expired = false;
      yield {
        header,
        offset,
        dataOffset: offset + BLOCK_SIZE,
        get body(): Readable {
          // Too late: the source has moved on, and a new body must not take bytes from it.
          if (expired && current === undefined) return Readable.from([]).destroy();
          current ??= body = new BodyReader(src, header.path, header.size);
          return current.stream;
        },
      };
      expired = true;
      body = undefined;
      if (current) await current.settle();
      else {
        const skipped = await src.skip(header.size);
        if (skipped < header.size) throw truncated(header.path, header.size, skipped);
      }
      // Missing padding is tolerated: the stream then ends, and so does the archive.
      await src.skip(padding(header.size));
    }
    finished = true;
    if (options.drainAfterEnd !== false) await src.drain();
  } finally {
    body?.abort();
    if (!finished || options.drainAfterEnd === false) await src.close();
  }
}

const META_NAMES: Record<string, string> = {
  x: "PAX extended header",
  g: "PAX global header",
  L: "GNU long name",
  K: "GNU long link",
};

/**
 * Reads header blocks up to and including the next entry's own header, applying PAX and GNU
 * metadata entries on the way. Undefined at the end of the archive.
 */
async function nextHeader(
  src: ByteSource,
  global: Map<string, Buffer>,
  maxMeta: number,
): Promise<{ header: TarHeader; offset: number } | undefined> {
  const pending: Pending = { local: new Map(), longName: undefined, longLink: undefined };
  for (;;) {
    const at = src.position;
    const block = await src.read(BLOCK_SIZE);
    if (block.length === 0) return undefined;
    if (block.length < BLOCK_SIZE) {
      // A cut-off run of zero padding is the end too; anything else was a header.
      if (isZeroBlock(block)) return undefined;
      throw corrupt(
        `tar header at byte ${at}: stream ended inside the header (${block.length} of 512 bytes)`,
      );
    }
    const raw = decodeHeader(block, at);
    if (raw === "zero") {
      const next = await src.read(BLOCK_SIZE);
      if (!isZeroBlock(next)) {
        throw corrupt(
          `tar header at byte ${at}: a lone zero block is followed by more data at byte ${at + 512}`,
        );
      }
      return undefined;
    }
    if (raw.size < 0) throw corrupt(`tar header at byte ${at}: negative size ${raw.size}`);
    const flag = raw.typeflag;
    const what = META_NAMES[flag];
    if (what === undefined) {
      if (flag === "S") throw corrupt(`tar entry at byte ${at}: sparse files are not supported`);
      return { header: makeHeader(raw, at, global, pending), offset: at };
    }
    if (raw.size > maxMeta) {
      throw corrupt(
        `tar entry at byte ${at}: ${what} of ${raw.size} bytes exceeds the limit of ${maxMeta} bytes`,
      );
    }
    // Copied: records (global ones especially) outlive the source chunk they came in.
    const data = Buffer.from(await src.read(raw.size));
    if (data.length < raw.size) throw truncated(headerPath(raw), raw.size, data.length);
    await src.skip(padding(raw.size));
    if (flag === "x" || flag === "g") {
      for (const [key, value] of decodePax(data, at)) {
        if (key.startsWith(PAX_SPARSE_PREFIX))
          throw corrupt(`tar entry at byte ${at}: sparse files are not supported`);
        if (flag === "x") pending.local.set(key, value);
        else if (value.length === 0) global.delete(key);
        else global.set(key, value);
      }
    } else {
      const nul = data.indexOf(0);
      const text = paxText(nul < 0 ? data : data.subarray(0, nul));
      if (flag === "L") pending.longName = text;
      else pending.longLink = text;
    }
  }
}

function makeHeader(
  raw: RawHeader,
  offset: number,
  global: ReadonlyMap<string, Buffer>,
  pending: Pending,
): TarHeader {
  // Local records override global ones. An empty local value cancels the key for this entry (the
  // header field applies again), except for xattrs, where it is an xattr with an empty value.
  const records = new Map(global);
  for (const [key, value] of pending.local) {
    if (value.length === 0 && !key.startsWith(PAX_XATTR_PREFIX)) records.delete(key);
    else records.set(key, value);
  }
  let type = entryType(raw.typeflag);
  const header: TarHeader = {
    path: pending.longName ?? headerPath(raw),
    type,
    typeflag: raw.typeflag,
    mode: raw.mode & 0o7777,
    uid: raw.uid,
    gid: raw.gid,
    uname: raw.uname,
    gname: raw.gname,
    size: raw.size,
    mtime: raw.mtime,
    linkname: pending.longLink ?? raw.linkname,
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs: {},
    pax: {},
  };
  for (const [key, value] of records) {
    if (key.startsWith(PAX_XATTR_PREFIX)) {
      header.xattrs[key.slice(PAX_XATTR_PREFIX.length)] = value;
      continue;
    }
    const text = paxText(value);
    header.pax[key] = text;
    switch (key) {
      case "path":
        header.path = text;
        break;
      case "linkpath":
        header.linkname = text;
        break;
      case "size":
        header.size = parseInteger(text, key, offset);
        break;
      case "uid":
        header.uid = parseInteger(text, key, offset);
        break;
      case "gid":
        header.gid = parseInteger(text, key, offset);
        break;
      case "uname":
        header.uname = text;
        break;
      case "gname":
        header.gname = text;
        break;
      case "mtime":
        header.mtime = parseTime(text, offset);
        break;
    }
  }
  // An old-style regular file whose name ends in a slash is a directory (V7 convention).
  if (raw.typeflag === "\0" && header.path.endsWith("/")) {
    type = "dir";
    header.type = type;
  }
  if (HEADER_ONLY.has(type)) header.size = 0;
  return header;
}
