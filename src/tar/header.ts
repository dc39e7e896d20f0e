/**
 * The 512-byte tar header block: USTAR (POSIX.1-1988) as written, plus what readers meet in layers:
 * GNU headers (`ustar  \0` magic, base-256 numbers), star's 131-byte prefix, and V7 headers.
 *
 * Layout (offset, length): name 0/100, mode 100/8, uid 108/8, gid 116/8, size 124/12, mtime 136/12,
 * chksum 148/8, typeflag 156/1, linkname 157/100, magic 257/6, version 263/2, uname 265/32,
 * gname 297/32, devmajor 329/8, devminor 337/8, prefix 345/155 (USTAR; GNU keeps atime/ctime/sparse
 * data there instead).
 */
import { isUtf8 } from "node:buffer";
import { RociError } from "../errors.ts";

export const BLOCK_SIZE = 512;

/** The kind of a tar entry as applied to a filesystem. Type `7` (contiguous) is a `file`. */
export type TarEntryType = "file" | "link" | "symlink" | "char" | "block" | "dir" | "fifo" | "unknown";

/** How a header block is marked: USTAR/PAX (`ustar\0` `00`), GNU (`ustar  \0`), or neither (V7). */
export type HeaderFormat = "ustar" | "gnu" | "v7";

/** The fields of one header block, decoded but not interpreted (no PAX, no GNU long names). */
export interface RawHeader {
  /** The name field alone; see `headerPath` for name joined with the USTAR prefix. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (may be negative when base-256 encoded). */
  mtime: number;
  /** The type flag character exactly as recorded (`"\0"` for an old-style regular file). */
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** USTAR prefix; always "" for GNU and V7 headers. */
  prefix: string;
  format: HeaderFormat;
}

/** What `encodeHeader` needs; omitted strings are empty, omitted numbers 0, format is USTAR. */
export interface HeaderFields {
  name: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  typeflag: string;
  linkname?: string;
  uname?: string;
  gname?: string;
  /** Written only when given (RP-5: no device numbers for non-devices). */
  devmajor?: number;
  devminor?: number;
  prefix?: string;
  format?: "ustar" | "gnu";
}

const NAME = [0, 100] as const;
const MODE = [100, 8] as const;
const UID = [108, 8] as const;
const GID = [116, 8] as const;
const SIZE = [124, 12] as const;
const MTIME = [136, 12] as const;
const CHKSUM = [148, 8] as const;
const TYPEFLAG = 156;
const LINKNAME = [157, 100] as const;
const MAGIC = [257, 6] as const;
const VERSION = [263, 2] as const;
const UNAME = [265, 32] as const;
const GNAME = [297, 32] as const;
const DEVMAJOR = [329, 8] as const;
const DEVMINOR = [337, 8] as const;
const PREFIX = [345, 155] as const;
/** star keeps a 131-byte prefix and "tar\0" at offset 508. */
const STAR_PREFIX = [345, 131] as const;

export const NAME_SIZE = NAME[1];
export const PREFIX_SIZE = PREFIX[1];
export const LINKNAME_SIZE = LINKNAME[1];
export const UNAME_SIZE = UNAME[1];
/** Largest value of a 7-digit octal field (mode, uid, gid, devmajor, devminor): 2^21 - 1. */
export const MAX_OCTAL_7 = 0o7777777;
/** Largest value of an 11-digit octal field (size, mtime): 8 GiB - 1. */
export const MAX_OCTAL_11 = 0o77777777777;

type Field = readonly [number, number];

function corrupt(at: number, what: string): RociError {
  return new RociError("CORRUPT_LAYER", `tar header at byte ${at}: ${what}`);
}

/**
 * Bytes of a name-like field up to its first NUL, as a string: UTF-8 when the bytes are valid
 * UTF-8 (what every current tar writes), otherwise Latin-1, so that no byte is lost or merged.
 */
export function decodeString(bytes: Buffer): string {
  return fieldString(bytes, [0, bytes.length]);
}

function fieldString(block: Buffer, [start, length]: Field): string {
  let end = start;
  const limit = start + length;
  let ascii = true;
  for (; end < limit; end++) {
    const c = block[end]!;
    if (c === 0) break;
    if (c > 0x7f) ascii = false;
  }
  if (ascii) return block.toString("latin1", start, end);
  const b = block.subarray(start, end);
  return isUtf8(b) ? b.toString("utf8") : b.toString("latin1");
}

/** Octal with leading/trailing spaces and NULs tolerated (as GNU tar and Go accept), or base-256. */
function parseNumber(block: Buffer, [start, length]: Field, at: number, what: string): number {
  const limit = start + length;
  const first = block[start]!;
  if (first & 0x80) {
    // Base-256 (GNU, star): big-endian two's complement; bit 6 of the first byte is the sign.
    const negative = (first & 0x40) !== 0;
    const inv = negative ? 0xff : 0;
    let value = 0n;
    for (let i = start; i < limit; i++) {
      let c = block[i]! ^ inv;
      if (i === start) c &= 0x7f;
      value = (value << 8n) | BigInt(c);
    }
    if (negative) value = -value - 1n;
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw corrupt(at, `${what} field out of range`);
    }
    return Number(value);
  }
  let i = start;
  while (i < limit && (block[i] === 0x20 || block[i] === 0)) i++;
  let end = i;
  while (end < limit && block[end] !== 0) end++;
  while (end > i && block[end - 1] === 0x20) end--;
  let value = 0;
  for (let j = i; j < end; j++) {
    const c = block[j]!;
    if (c < 0x30 || c > 0x37) throw corrupt(at, `invalid ${what} field`);
    value = value * 8 + (c - 0x30);
  }
  return value;
}

/** The unsigned sum of the block with the checksum field counted as spaces. */
function unsignedChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < CHKSUM[0]; i++) sum += block[i]!;
  for (let i = CHKSUM[0] + CHKSUM[1]; i < BLOCK_SIZE; i++) sum += block[i]!;
  return sum;
}

/** The same sum with bytes taken as signed (old Sun tar and some GNU tars wrote that). */
function signedChecksum(block: Buffer): number {
  let sum = unsignedChecksum(block);
  for (let i = 0; i < BLOCK_SIZE; i++) {
    if (i >= CHKSUM[0] && i < CHKSUM[0] + CHKSUM[1]) continue;
    if (block[i]! > 0x7f) sum -= 0x100;
  }
  return sum;
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decodes one 512-byte header block. `offset` is the block's position in the archive, used in
 * error messages. Returns "zero" for an all-zero block (end-of-archive marker). Throws
 * CORRUPT_LAYER on a checksum mismatch (signed and unsigned sums are both accepted) or on a
 * numeric field that is neither octal nor base-256.
 */
export function decodeHeader(block: Buffer, offset: number): RawHeader | "zero" {
  if (block.length !== BLOCK_SIZE) throw corrupt(offset, `expected ${BLOCK_SIZE} bytes, got ${block.length}`);
  if (isZeroBlock(block)) return "zero";
  let recorded: number;
  try {
    recorded = parseNumber(block, CHKSUM, offset, "checksum");
  } catch {
    throw corrupt(offset, "checksum mismatch");
  }
  if (recorded !== unsignedChecksum(block) && recorded !== signedChecksum(block)) {
    throw corrupt(offset, "checksum mismatch");
  }

  const magic = block.toString("latin1", MAGIC[0], MAGIC[0] + MAGIC[1]);
  const version = block.toString("latin1", VERSION[0], VERSION[0] + VERSION[1]);
  let format: HeaderFormat = "v7";
  if (magic === "ustar\0" && version === "00") format = "ustar";
  else if (magic === "ustar " && version === " \0") format = "gnu";
  // Some writers put "ustar\0" with other versions (e.g. "\0\0"); treat them as USTAR too.
  else if (magic === "ustar\0") format = "ustar";

  const modern = format !== "v7";
  let prefix = "";
  if (format === "ustar") {
    const star = block.toString("latin1", 508, 512) === "tar\0";
    prefix = fieldString(block, star ? STAR_PREFIX : PREFIX);
  }
  return {
    name: fieldString(block, NAME),
    mode: parseNumber(block, MODE, offset, "mode"),
    uid: parseNumber(block, UID, offset, "uid"),
    gid: parseNumber(block, GID, offset, "gid"),
    size: parseNumber(block, SIZE, offset, "size"),
    mtime: parseNumber(block, MTIME, offset, "mtime"),
    typeflag: String.fromCharCode(block[TYPEFLAG]!),
    linkname: fieldString(block, LINKNAME),
    uname: modern ? fieldString(block, UNAME) : "",
    gname: modern ? fieldString(block, GNAME) : "",
    devmajor: modern ? parseNumber(block, DEVMAJOR, offset, "devmajor") : 0,
    devminor: modern ? parseNumber(block, DEVMINOR, offset, "devminor") : 0,
    prefix,
    format,
  };
}

/** The entry path a header alone records: `prefix/name` for USTAR, else the name field. */
export function headerPath(raw: Pick<RawHeader, "name" | "prefix">): string {
  return raw.prefix === "" ? raw.name : `${raw.prefix}/${raw.name}`;
}

/** Maps a type flag to an entry type; `x`, `g`, `L`, `K` and the rest are "unknown" here. */
export function entryType(typeflag: string): TarEntryType {
  switch (typeflag) {
    case "0":
    case "\0":
    case "7":
      return "file";
    case "1":
      return "link";
    case "2":
      return "symlink";
    case "3":
      return "char";
    case "4":
      return "block";
    case "5":
      return "dir";
    case "6":
      return "fifo";
    default:
      return "unknown";
  }
}

/** The type flag the writer uses for an entry type. */
export function typeflagOf(type: Exclude<TarEntryType, "unknown">): string {
  return { file: "0", link: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" }[type];
}

function writeString(block: Buffer, [start, length]: Field, value: string, what: string): void {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > length) {
    throw new RociError(
      "INTERNAL",
      `tar header: ${what} ${JSON.stringify(value)} is longer than ${length} bytes`,
    );
  }
  if (bytes.includes(0)) throw new RociError("INTERNAL", `tar header: ${what} contains a NUL byte`);
  bytes.copy(block, start);
}

/** Octal, zero-padded and NUL-terminated when it fits in length-1 digits, else base-256. */
function writeNumber(block: Buffer, [start, length]: Field, value: number, what: string): void {
  if (!Number.isSafeInteger(value))
    throw new RociError("INTERNAL", `tar header: ${what} ${value} is not an integer`);
  if (value >= 0 && value < 8 ** (length - 1)) {
    block.write(value.toString(8).padStart(length - 1, "0"), start, "latin1");
    block[start + length - 1] = 0;
    return;
  }
  // Base-256: two's complement in the whole field, with the marker bit set in the first byte.
  let v = BigInt(value);
  for (let i = start + length - 1; i >= start; i--) {
    block[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[start] = value < 0 ? 0xff : 0x80 | block[start]!;
}

/**
 * Encodes one header block. Strings are written as UTF-8 and must fit their fields (INTERNAL error
 * otherwise: the caller decides between USTAR and PAX). Numbers that do not fit their octal field are
 * written in base-256 (GNU extension; TarWriter never relies on it and uses PAX records instead).
 */
export function encodeHeader(h: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  writeString(block, NAME, h.name, "name");
  writeNumber(block, MODE, h.mode ?? 0, "mode");
  writeNumber(block, UID, h.uid ?? 0, "uid");
  writeNumber(block, GID, h.gid ?? 0, "gid");
  writeNumber(block, SIZE, h.size ?? 0, "size");
  writeNumber(block, MTIME, h.mtime ?? 0, "mtime");
  if (h.typeflag.length !== 1) throw new RociError("INTERNAL", `tar header: invalid type flag ${h.typeflag}`);
  block[TYPEFLAG] = h.typeflag.charCodeAt(0);
  writeString(block, LINKNAME, h.linkname ?? "", "linkname");
  if (h.format === "gnu") {
    block.write("ustar  \0", MAGIC[0], "latin1");
  } else {
    block.write("ustar\0", MAGIC[0], "latin1");
    block.write("00", VERSION[0], "latin1");
  }
  writeString(block, UNAME, h.uname ?? "", "uname");
  writeString(block, GNAME, h.gname ?? "", "gname");
  if (h.devmajor !== undefined) writeNumber(block, DEVMAJOR, h.devmajor, "devmajor");
  if (h.devminor !== undefined) writeNumber(block, DEVMINOR, h.devminor, "devminor");
  if (h.format === "gnu") {
    if (h.prefix) throw new RociError("INTERNAL", "tar header: GNU headers have no prefix field");
  } else {
    writeString(block, PREFIX, h.prefix ?? "", "prefix");
  }
  const sum = unsignedChecksum(block);
  block.write(sum.toString(8).padStart(6, "0"), CHKSUM[0], "latin1");
  block[CHKSUM[0] + 6] = 0;
  block[CHKSUM[0] + 7] = 0x20;
  return block;
}

/** True when every byte of `s` is ASCII (and none is NUL). */
export function isPlainAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0x7f) return false;
  }
  return true;
}

/**
 * Splits an ASCII path longer than 100 bytes into USTAR prefix (≤155) and name (≤100, non-empty)
 * at a slash, preferring the longest prefix (as GNU tar and Go do). Returns undefined when the path
 * needs no split, is not ASCII, or cannot be split.
 */
export function splitUstarPath(path: string): { prefix: string; name: string } | undefined {
  if (path.length <= NAME_SIZE || !isPlainAscii(path)) return undefined;
  let limit = path.length;
  if (limit > PREFIX_SIZE + 1) limit = PREFIX_SIZE + 1;
  else if (path[limit - 1] === "/") limit--;
  const i = path.lastIndexOf("/", limit - 1);
  if (i <= 0) return undefined;
  const name = path.slice(i + 1);
  if (name.length === 0 || name.length > NAME_SIZE || i > PREFIX_SIZE) return undefined;
  return { prefix: path.slice(0, i), name };
}
