/**
 * A tar archive opened so that its entries can be read by offset, without writing to the input:
 * a plain tar is used in place; a gzip or zstd one is decompressed ONCE into a temp file under
 * `os.tmpdir()` (never next to the input), which `close()` removes, as does the exit of the process.
 * Then the tar is indexed (`indexTar`) and entries are served as byte ranges of that file.
 */
import { createReadStream, createWriteStream, rmSync } from "node:fs";
import { chmod, mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline as pipelineCallback, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Expected, VerifyingStream } from "../digest/hash.ts";
import { errnoOf, fromFsError, RociError } from "../errors.ts";
import { type Compression, decompressAuto, sniffCompression } from "../layer/compression.ts";
import { indexTar, type ResolvedEntry, type TarIndex } from "./tar-index.ts";

export interface ArchiveSourceOptions {
  /** Hears what happens behind the scenes (decompression into a temp file, indexing). */
  onDebug?: (message: string) => void;
}

export interface ArchiveSource {
  /** The archive as the user named it. */
  readonly archive: string;
  /** The uncompressed tar read by offset: `archive` itself, or a temp file. */
  readonly file: string;
  /** How the archive was compressed as a whole. */
  readonly compression: Compression;
  /** Removes the temp file, if any (idempotent). Streams already open keep reading. */
  close(): Promise<void>;
}

/** Temp directories to remove when the process exits, if `close()` was not called. */
const pendingTemps = new Set<string>();
let exitHookInstalled = false;

function removeAtExit(dir: string): void {
  pendingTemps.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const path of pendingTemps) rmSync(path, { recursive: true, force: true });
  });
}

/** bzip2 and xz are recognised only to say clearly that they are not read. */
function sniffOther(head: Uint8Array): string | undefined {
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  const xz = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
  if (xz.every((byte, i) => head[i] === byte)) return "xz";
  return undefined;
}

async function readHead(path: string, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Opens `path` for reading by offset; see the module comment. */
export async function openArchiveSource(
  path: string,
  options: ArchiveSourceOptions = {},
): Promise<ArchiveSource> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    throw errnoOf(error) === "ENOENT"
      ? new RociError("NOT_FOUND", `archive ${path}: no such file`, { subject: path, cause: error })
      : fromFsError(error, path, "archive");
  }
  if (info.isDirectory()) {
    throw new RociError("INVALID_LAYOUT", `archive ${path}: is a directory, not a tar archive`, {
      subject: path,
      hint: "name a layout directory with oci-layout://PATH or oci:PATH",
    });
  }
  if (!info.isFile()) {
    throw new RociError("INVALID_LAYOUT", `archive ${path}: not a regular file`, {
      subject: path,
      hint: "archives are read by offset; save a piped archive to a file first",
    });
  }
  let head: Buffer;
  try {
    head = await readHead(path, 6);
  } catch (error) {
    throw fromFsError(error, path, "archive");
  }
  const other = sniffOther(head);
  if (other !== undefined) {
    throw new RociError(
      "UNSUPPORTED_COMPRESSION",
      `archive ${path}: ${other}-compressed archives are not read`,
      {
        subject: path,
        hint: "decompress it first, or recompress it with gzip or zstd",
      },
    );
  }
  const compression = sniffCompression(head);
  if (compression === "none") {
    return { archive: path, file: path, compression, close: async () => {} };
  }

  const dir = await mkdtemp(join(tmpdir(), "roci-archive-"));
  removeAtExit(dir);
  await chmod(dir, 0o700);
  const file = join(dir, "archive.tar");
  const cleanup = async (): Promise<void> => {
    pendingTemps.delete(dir);
    await rm(dir, { recursive: true, force: true });
  };
  options.onDebug?.(`decompressing ${path} (${compression}) into ${file} to read it by offset`);
  try {
    await pipeline(
      createReadStream(path),
      decompressAuto(),
      createWriteStream(file, { flags: "wx", mode: 0o600 }),
    );
  } catch (error) {
    await cleanup();
    const zlibCode = errnoOf(error)?.startsWith("Z_") === true;
    if ((error instanceof RociError && error.code === "CORRUPT_LAYER") || zlibCode) {
      const reason =
        error instanceof Error ? error.message.replace(/^layer is not valid \w+: /, "") : String(error);
      throw new RociError("CORRUPT_ARCHIVE", `archive ${path}: not valid ${compression}: ${reason}`, {
        subject: path,
        cause: error,
        hint: "the archive is damaged; produce it again",
      });
    }
    if (errnoOf(error) === "ENOSPC") {
      throw new RociError("IO", `archive ${path}: no space left in ${tmpdir()} to decompress it`, {
        subject: path,
        cause: error,
        hint: "free space there, point TMPDIR elsewhere, or decompress the archive yourself",
      });
    }
    throw fromFsError(error, path, "archive");
  }
  let closed: Promise<void> | undefined;
  return {
    archive: path,
    file,
    compression,
    close: () => {
      closed ??= cleanup();
      return closed;
    },
  };
}

/** An archive's source and the index of its entries. */
export interface OpenedArchive {
  readonly source: ArchiveSource;
  readonly index: TarIndex;
}

/** Opens and indexes `path` (decompressing it first when needed). */
export async function openArchive(path: string, options: ArchiveSourceOptions = {}): Promise<OpenedArchive> {
  const source = await openArchiveSource(path, options);
  try {
    const started = performance.now();
    const index = await indexTar(source.file, { archive: path });
    const ms = (performance.now() - started).toFixed(1);
    options.onDebug?.(`indexed ${index.entries.size} entries of ${path} in ${ms} ms`);
    return { source, index };
  } catch (error) {
    await source.close();
    throw error instanceof RociError ? error : fromFsError(error, path, "archive");
  }
}

/** Reads a whole entry into memory, refusing one larger than `limit` before reading a byte. */
export async function readEntry(
  index: TarIndex,
  resolved: ResolvedEntry,
  limit: number,
  where: string,
): Promise<Buffer> {
  if (resolved.size > limit) {
    throw new RociError(
      "DOCUMENT_TOO_LARGE",
      `${where}: ${resolved.size} bytes is over the ${limit}-byte limit for JSON documents`,
      { subject: where },
    );
  }
  return readRange(index, resolved.dataOffset, resolved.size);
}

/** Exactly `length` bytes at `offset` of the indexed file; CORRUPT_ARCHIVE if the file got shorter. */
export async function readRange(index: TarIndex, offset: number, length: number): Promise<Buffer> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(index.file, "r");
  } catch (error) {
    throw fromFsError(error, index.archive, "archive");
  }
  try {
    const buffer = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await handle.read(buffer, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < length) {
      throw new RociError(
        "CORRUPT_ARCHIVE",
        `${index.archive}: truncated at byte ${offset + got} (it changed after it was opened?)`,
        { subject: index.archive },
      );
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

/**
 * The bytes of an entry (`fs.createReadStream` of the range), verified against `expected` on the
 * way: the stream errors (SIZE_MISMATCH, DIGEST_MISMATCH) instead of ending when they are wrong.
 */
export function streamVerified(
  index: TarIndex,
  offset: number,
  length: number,
  expected: Expected,
  where: string,
): Readable {
  const verifier = new VerifyingStream(expected, where);
  const source =
    length === 0
      ? Readable.from([])
      : createReadStream(index.file, { start: offset, end: offset + length - 1, highWaterMark: 1024 * 1024 });
  // pipeline destroys both ends when either fails, so a consumer that stops early leaks no fd.
  pipelineCallback(source, verifier, (error) => {
    if (error && !verifier.destroyed) verifier.destroy(fromFsError(error, index.archive, "archive"));
  });
  return verifier;
}
