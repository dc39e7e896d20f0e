/**
 * A deterministic tar writer for layers (SPEC-CHECKLIST RP-5): USTAR whenever an entry fits, else a
 * PAX `x` header carrying only the records that are needed; no GNU extensions, no sparse files, no
 * atime/ctime, whole-second mtimes, and two zero blocks at the end without padding to a record.
 */
import { Readable } from "node:stream";
import { RociError } from "../errors.ts";
import {
  BLOCK_SIZE,
  encodeHeader,
  type HeaderFields,
  isPlainAscii,
  LINKNAME_SIZE,
  MAX_OCTAL_7,
  MAX_OCTAL_11,
  NAME_SIZE,
  splitUstarPath,
  type TarEntryType,
  typeflagOf,
  UNAME_SIZE,
} from "./header.ts";
import { DEFAULT_MAX_META_SIZE, encodePax, PAX_XATTR_PREFIX, paxHeaderName } from "./pax.ts";

export interface TarHeaderInput {
  /** Written exactly as given (add a trailing "/" to directories if you want one). */
  path: string;
  type: Exclude<TarEntryType, "unknown">;
  /** Masked with 0o7777. Default: 0o755 for dirs, 0o777 for symlinks, 0o644 otherwise. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Default "" (RP-3). */
  uname?: string;
  gname?: string;
  /** Files only; default: the length of a Buffer body, else 0. Required with a stream body. */
  size?: number;
  /** Seconds since the epoch; rounded down to whole seconds. Default 0. */
  mtime?: number;
  /** Required for link (the first-seen path) and symlink (the target text), ignored otherwise. */
  linkname?: string;
  /** Char and block devices only; default 0. */
  devmajor?: number;
  devminor?: number;
  /** Written as `SCHILY.xattr.<name>` PAX records. */
  xattrs?: Record<string, Buffer | string>;
}

const ZEROS = Buffer.alloc(BLOCK_SIZE * 2);

function invalid(path: string, what: string): RociError {
  return new RociError("INTERNAL", `tar entry ${JSON.stringify(path)}: ${what}`);
}

function checkCount(path: string, what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw invalid(path, `${what} ${value} is not a non-negative integer`);
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** ASCII characters of `s` (no NUL), cut to `max` bytes: the best a header field can hold. */
function asciiFallback(s: string, max: number): string {
  let out = "";
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (c > 0 && c < 0x80) out += ch;
  }
  return out.slice(0, max);
}

/**
 * The header blocks for one entry: an optional PAX `x` header (with its data and padding) and the
 * entry's USTAR header. Pure and deterministic; throws INTERNAL on input that cannot be written.
 */
export function encodeEntryHeader(input: TarHeaderInput, bodySize: number): Buffer {
  const { path, type } = input;
  if (path.length === 0) throw invalid(path, "empty path");
  if (path.includes("\0")) throw invalid(path, "NUL in the path");
  const isLink = type === "link" || type === "symlink";
  const linkname = isLink ? (input.linkname ?? "") : "";
  if (isLink && linkname.length === 0) throw invalid(path, `a ${type} needs a linkname`);
  if (linkname.includes("\0")) throw invalid(path, "NUL in the linkname");
  const uid = input.uid ?? 0;
  const gid = input.gid ?? 0;
  checkCount(path, "uid", uid);
  checkCount(path, "gid", gid);
  const uname = input.uname ?? "";
  const gname = input.gname ?? "";
  if (uname.includes("\0") || gname.includes("\0")) throw invalid(path, "NUL in uname or gname");
  const givenMode = input.mode ?? (type === "dir" ? 0o755 : type === "symlink" ? 0o777 : 0o644);
  checkCount(path, "mode", givenMode);
  const mode = givenMode & 0o7777;
  const mtime = Math.floor(input.mtime ?? 0);
  if (!Number.isSafeInteger(mtime)) throw invalid(path, `mtime ${input.mtime} is not a number of seconds`);
  const isDevice = type === "char" || type === "block";
  const devmajor = input.devmajor ?? 0;
  const devminor = input.devminor ?? 0;
  if (isDevice) {
    checkCount(path, "devmajor", devmajor);
    checkCount(path, "devminor", devminor);
    if (devmajor > MAX_OCTAL_7 || devminor > MAX_OCTAL_7)
      throw invalid(path, "device numbers too large for tar");
  }

  const pax = new Map<string, string | Buffer>();
  let name = path;
  let prefix = "";
  if (!isPlainAscii(path)) {
    pax.set("path", path);
    name = asciiFallback(path, NAME_SIZE);
  } else if (path.length > NAME_SIZE) {
    const split = splitUstarPath(path);
    if (split) ({ prefix, name } = split);
    else {
      pax.set("path", path);
      name = path.slice(0, NAME_SIZE);
    }
  }
  let linkField = linkname;
  if (!isPlainAscii(linkname) || linkname.length > LINKNAME_SIZE) {
    pax.set("linkpath", linkname);
    linkField = asciiFallback(linkname, LINKNAME_SIZE);
  }
  let unameField = uname;
  if (!isPlainAscii(uname) || byteLength(uname) > UNAME_SIZE) {
    pax.set("uname", uname);
    unameField = asciiFallback(uname, UNAME_SIZE);
  }
  let gnameField = gname;
  if (!isPlainAscii(gname) || byteLength(gname) > UNAME_SIZE) {
    pax.set("gname", gname);
    gnameField = asciiFallback(gname, UNAME_SIZE);
  }
  // Numbers that do not fit their octal field go to PAX, and the field gets 0 (as Go writes).
  let uidField = uid;
  if (uid > MAX_OCTAL_7) {
    pax.set("uid", String(uid));
    uidField = 0;
  }
  let gidField = gid;
  if (gid > MAX_OCTAL_7) {
    pax.set("gid", String(gid));
    gidField = 0;
  }
  let sizeField = bodySize;
  if (bodySize > MAX_OCTAL_11) {
    pax.set("size", String(bodySize));
    sizeField = 0;
  }
  let mtimeField = mtime;
  if (mtime < 0 || mtime > MAX_OCTAL_11) {
    pax.set("mtime", String(mtime));
    mtimeField = 0;
  }
  for (const [key, value] of Object.entries(input.xattrs ?? {})) {
    if (key.length === 0 || key.includes("=") || key.includes("\0")) {
      throw invalid(path, `xattr name ${JSON.stringify(key)} cannot be written to tar`);
    }
    pax.set(PAX_XATTR_PREFIX + key, value);
  }

  const fields: HeaderFields = {
    name,
    prefix,
    mode,
    uid: uidField,
    gid: gidField,
    size: sizeField,
    mtime: mtimeField,
    typeflag: typeflagOf(type),
    linkname: linkField,
    uname: unameField,
    gname: gnameField,
  };
  if (isDevice) {
    fields.devmajor = devmajor;
    fields.devminor = devminor;
  }
  const main = encodeHeader(fields);
  if (pax.size === 0) return main;

  const data = encodePax(pax);
  if (data.length > DEFAULT_MAX_META_SIZE)
    throw invalid(path, `PAX records of ${data.length} bytes are too large`);
  const paxHeader = encodeHeader({
    name: paxHeaderName(path),
    mode: 0o644,
    size: data.length,
    typeflag: "x",
  });
  const pad = (BLOCK_SIZE - (data.length % BLOCK_SIZE)) % BLOCK_SIZE;
  return Buffer.concat([paxHeader, data, ZEROS.subarray(0, pad), main]);
}

/**
 * Writes a tar archive to `readable`. Call `entry()` for each entry (awaiting each: it resolves when
 * the consumer has taken the bytes, so a slow consumer slows the producer), then `finish()`.
 *
 * Invalid header input is refused with an INTERNAL error before anything is written, leaving the
 * writer usable. A body delivering more or fewer bytes than `size` (SIZE_MISMATCH), or failing,
 * breaks the archive: `entry()` rejects and `readable` is destroyed with the same error.
 */
export class TarWriter {
  readonly readable: Readable;
  private waiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private failure: Error | undefined;
  private written = 0;

  constructor(options: { highWaterMark?: number } = {}) {
    this.readable = new Readable({
      highWaterMark: options.highWaterMark ?? 64 * 1024,
      read: () => {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter?.resolve();
      },
      destroy: (error, callback) => {
        this.failure ??=
          error ?? new RociError("INTERRUPTED", "tar stream destroyed before the archive was finished");
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter?.reject(this.failure);
        callback(error);
      },
    });
  }

  /** Bytes handed to `readable` so far (the archive offset of the next header). */
  get position(): number {
    return this.written;
  }

  /**
   * Adds one entry; entries are written in call order even if calls overlap. A stream body is read
   * to its end, or destroyed if the entry fails.
   */
  entry(header: TarHeaderInput, body?: Readable | Buffer): Promise<void> {
    return this.serialize(() => this.writeEntry(header, body)).catch((error: unknown) => {
      if (body !== undefined && !Buffer.isBuffer(body) && !body.destroyed) body.destroy();
      throw error;
    });
  }

  /** Writes the end-of-archive marker (two zero blocks) and ends `readable`. */
  finish(): Promise<void> {
    return this.serialize(async () => {
      await this.push(ZEROS);
      this.closed = true;
      this.readable.push(null);
    });
  }

  /** Abandons the archive: `readable` is destroyed with `error`. */
  destroy(error?: Error): void {
    this.readable.destroy(error);
  }

  private serialize(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(() => {
      if (this.failure) throw this.failure;
      if (this.closed) throw new RociError("INTERNAL", "TarWriter: the archive is already finished");
      return task();
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async push(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.written += chunk.length;
    if (this.readable.push(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private fail(error: unknown): never {
    const failure = error instanceof Error ? error : new Error(String(error));
    if (!this.readable.destroyed) this.readable.destroy(failure);
    throw this.failure ?? failure;
  }

  private async writeEntry(input: TarHeaderInput, body: Readable | Buffer | undefined): Promise<void> {
    const isFile = input.type === "file";
    if (!isFile && body !== undefined) throw invalid(input.path, `a ${input.type} entry has no body`);
    if (!isFile && input.size !== undefined && input.size !== 0) {
      throw invalid(input.path, `a ${input.type} entry cannot have a size`);
    }
    if (body !== undefined && !Buffer.isBuffer(body) && input.size === undefined) {
      throw invalid(input.path, "a stream body needs a size");
    }
    let size = input.size ?? (Buffer.isBuffer(body) ? body.length : 0);
    if (body === undefined && isFile && size !== 0) throw invalid(input.path, `size ${size} but no body`);
    if (!isFile) size = 0;
    checkCount(input.path, "size", size);
    if (Buffer.isBuffer(body) && body.length !== size) {
      throw new RociError(
        "SIZE_MISMATCH",
        `tar entry ${JSON.stringify(input.path)}: body has ${body.length} bytes, size says ${size}`,
      );
    }
    const headers = encodeEntryHeader(input, size);
    try {
      await this.push(headers);
      if (Buffer.isBuffer(body)) {
        if (body.length > 0) await this.push(body);
      } else if (body !== undefined) {
        let got = 0;
        for await (const chunk of body) {
          if (!(chunk instanceof Uint8Array))
            throw new RociError("INTERNAL", "tar entry body must yield bytes");
          got += chunk.length;
          if (got > size) {
            throw new RociError(
              "SIZE_MISMATCH",
              `tar entry ${JSON.stringify(input.path)}: body delivered more than the ${size} bytes of its size`,
            );
          }
          if (chunk.length > 0) {
            await this.push(
              Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length),
            );
          }
        }
        if (got !== size) {
          throw new RociError(
            "SIZE_MISMATCH",
            `tar entry ${JSON.stringify(input.path)}: body delivered ${got} bytes, its size is ${size}`,
          );
        }
      }
      const pad = (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
      if (pad > 0) await this.push(ZEROS.subarray(0, pad));
    } catch (error) {
      this.fail(error);
    }
  }
}
