/**
 * PAX extended header records (POSIX.1-2001 `pax` format): `"<length> <key>=<value>\n"`, where
 * `<length>` is the decimal byte length of the whole record, itself included. Keys and values are
 * UTF-8; values of `SCHILY.xattr.*` are raw bytes.
 */
import { posix } from "node:path";
import { RociError } from "../errors.ts";
import { decodeString, NAME_SIZE } from "./header.ts";

export const PAX_XATTR_PREFIX = "SCHILY.xattr.";
export const PAX_SPARSE_PREFIX = "GNU.sparse.";
/** Largest PAX or GNU long-name metadata entry the reader accepts by default (and the writer writes). */
export const DEFAULT_MAX_META_SIZE = 1024 * 1024;

/** Keys whose values name things and so must not contain NUL (as Go checks). */
const TEXT_KEYS = new Set(["path", "linkpath", "uname", "gname"]);

function corrupt(at: number, what: string): RociError {
  return new RociError("CORRUPT_LAYER", `tar extended header at byte ${at}: ${what}`);
}

/**
 * Parses the data of an `x` or `g` entry into its records, in order (a later record for the same
 * key wins). Values are returned as bytes; use `paxText` for text values. Trailing NUL padding is
 * tolerated. `at` is the header's byte offset in the archive, for error messages.
 * Throws CORRUPT_LAYER on a malformed record.
 */
export function decodePax(data: Buffer, at = 0): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) {
      // NUL padding after the last record, as some writers leave it.
      for (let i = pos; i < data.length; i++)
        if (data[i] !== 0) throw corrupt(at, "garbage after NUL padding");
      break;
    }
    const space = data.indexOf(0x20, pos);
    if (space < 0 || space === pos || space - pos > 16) throw corrupt(at, "malformed record length");
    let length = 0;
    for (let i = pos; i < space; i++) {
      const c = data[i]!;
      if (c < 0x30 || c > 0x39) throw corrupt(at, "malformed record length");
      length = length * 10 + (c - 0x30);
    }
    const end = pos + length;
    if (length < 5 || end > data.length || end <= space + 1) throw corrupt(at, "record length out of range");
    if (data[end - 1] !== 0x0a) throw corrupt(at, "record does not end with a newline");
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw corrupt(at, "record without a key");
    const keyBytes = record.subarray(0, eq);
    if (keyBytes.includes(0)) throw corrupt(at, "NUL in a record key");
    const key = keyBytes.toString("utf8");
    const value = record.subarray(eq + 1);
    if (TEXT_KEYS.has(key) && value.includes(0)) throw corrupt(at, `NUL in the ${key} record`);
    records.set(key, value);
    pos = end;
  }
  return records;
}

/** A text record value (UTF-8, or Latin-1 when not valid UTF-8, like header fields). */
export function paxText(value: Buffer): string {
  return value.includes(0) ? value.toString("utf8") : decodeString(value);
}

/**
 * Encodes records deterministically: sorted bytewise by key (UTF-8), one record per key.
 * Throws INTERNAL on a key that is empty or contains `=` or NUL.
 */
export function encodePax(
  records: ReadonlyMap<string, string | Buffer> | Record<string, string | Buffer>,
): Buffer {
  const entries = records instanceof Map ? [...records.entries()] : Object.entries(records);
  const keyed = entries.map(([key, value]) => ({
    key,
    keyBytes: Buffer.from(key, "utf8"),
    value: typeof value === "string" ? Buffer.from(value, "utf8") : value,
  }));
  keyed.sort((a, b) => Buffer.compare(a.keyBytes, b.keyBytes));
  const parts: Buffer[] = [];
  for (const { key, keyBytes, value } of keyed) {
    if (keyBytes.length === 0 || keyBytes.includes(0x3d) || keyBytes.includes(0)) {
      throw new RociError(
        "INTERNAL",
        `PAX record key ${JSON.stringify(key)} is empty or contains '=' or NUL`,
      );
    }
    if (TEXT_KEYS.has(key) && value.includes(0)) {
      throw new RociError("INTERNAL", `PAX record ${key} contains a NUL byte`);
    }
    // " key=value\n" plus the decimal length, which counts its own digits.
    const rest = keyBytes.length + value.length + 3;
    let length = rest + String(rest).length;
    if (String(length).length !== String(rest).length) length = rest + String(length).length;
    parts.push(
      Buffer.from(`${length} `, "latin1"),
      keyBytes,
      Buffer.from("=", "latin1"),
      value,
      Buffer.from("\n", "latin1"),
    );
  }
  return Buffer.concat(parts);
}

/**
 * The name of the `x` header written before the entry `entryPath`: `<dir>/PaxHeaders.0/<base>`
 * (as Go's archive/tar writes; no process id, unlike GNU tar's default), reduced to ASCII without
 * NUL, truncated to 100 bytes, trailing slashes removed.
 */
export function paxHeaderName(entryPath: string): string {
  const slash = entryPath.lastIndexOf("/");
  const dir = entryPath.slice(0, slash + 1);
  const base = entryPath.slice(slash + 1);
  let name = posix.join(dir, "PaxHeaders.0", base);
  let ascii = "";
  for (const ch of name) {
    const c = ch.charCodeAt(0);
    if (c > 0 && c < 0x80) ascii += ch;
  }
  name = ascii.slice(0, NAME_SIZE);
  while (name.endsWith("/")) name = name.slice(0, -1);
  return name;
}
