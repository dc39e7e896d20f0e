/**
 * Helpers for archive tests: temp directories, running the peer tools (tar, gzip, zstd, skopeo) with
 * argument arrays, hand-made tars (any name, type, link and size), and proofs that an input archive
 * was left alone (its directory's snapshot is unchanged).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { chmod, mkdtemp, open, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { BLOCK_SIZE, encodeHeader } from "../tar/header.ts";
import { encodePax } from "../tar/pax.ts";
import { diffSnapshots, snapshotTree } from "./readonly.ts";

const execFileAsync = promisify(execFile);

const temps: string[] = [];
let hooked = false;

/** A fresh, world-traversable temp directory, removed when the process exits. */
export async function scratch(prefix = "roci-archive-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  temps.push(dir);
  if (!hooked) {
    hooked = true;
    process.once("exit", () => {
      for (const path of temps) rmSync(path, { recursive: true, force: true });
    });
  }
  return dir;
}

/** Runs a program (no shell); throws with its stderr when it fails. Returns stdout. */
export async function sh(file: string, args: readonly string[], cwd?: string): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync(file, [...args], {
      cwd,
      encoding: "buffer",
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const e = error as Error & { stderr?: Buffer };
    throw new Error(`${file} ${args.join(" ")} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
}

export const sha256 = (bytes: Uint8Array): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** The digest of what `skopeo inspect --raw REF` prints (the manifest or index bytes as stored). */
export async function skopeoRawDigest(ref: string): Promise<{ digest: string; json: unknown }> {
  const raw = await sh("skopeo", ["inspect", "--raw", ref]);
  return { digest: sha256(raw), json: JSON.parse(raw.toString("utf8")) as unknown };
}

/** `skopeo copy SRC DST`, quietly. */
export async function skopeoCopy(source: string, destination: string, all = false): Promise<void> {
  await sh("skopeo", ["copy", "--quiet", ...(all ? ["--all"] : []), source, destination]);
}

/** One entry of a hand-made tar: nothing checked, so names, links and sizes may lie. */
export interface HandEntry {
  name: string;
  /** Type flag; default "0" (file). */
  typeflag?: string;
  linkname?: string;
  data?: Buffer | string;
  /** The size field; default the data's length. */
  size?: number;
  mode?: number;
  /** A PAX `x` header before the entry. */
  pax?: Record<string, string>;
  /** A GNU `L` long-name entry before the entry. */
  gnuLongName?: string;
}

const pad = (length: number): Buffer => Buffer.alloc((BLOCK_SIZE - (length % BLOCK_SIZE)) % BLOCK_SIZE);

/** A tar of hand-made entries; `trailer: false` leaves out the two zero blocks. */
export function handTar(entries: readonly HandEntry[], options: { trailer?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.pax) {
      const data = encodePax(entry.pax);
      parts.push(
        encodeHeader({ name: "PaxHeaders.0/x", mode: 0o644, size: data.length, typeflag: "x" }),
        data,
        pad(data.length),
      );
    }
    if (entry.gnuLongName !== undefined) {
      const data = Buffer.from(`${entry.gnuLongName}\0`);
      parts.push(
        encodeHeader({ name: "././@LongLink", mode: 0o644, size: data.length, typeflag: "L", format: "gnu" }),
        data,
        pad(data.length),
      );
    }
    const data = Buffer.from(entry.data ?? "");
    const typeflag = entry.typeflag ?? "0";
    parts.push(
      encodeHeader({
        name: entry.name,
        mode: entry.mode ?? (typeflag === "5" ? 0o755 : 0o644),
        size: entry.size ?? data.length,
        mtime: 1_700_000_000,
        typeflag,
        linkname: entry.linkname ?? "",
      }),
      data,
      pad(data.length),
    );
  }
  if (options.trailer !== false) parts.push(Buffer.alloc(2 * BLOCK_SIZE));
  return Buffer.concat(parts);
}

/** The entries of an OCI layout directory as hand-tar entries (files only), for rearranging. */
export async function layoutFiles(layout: string, names: readonly string[]): Promise<HandEntry[]> {
  return Promise.all(names.map(async (name) => ({ name, data: await readFile(join(layout, name)) })));
}

/** Flips one byte at `offset` of `path`, in place. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = (byte[0] as number) ^ 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** Writes `bytes` to a new file `name` in `dir` and returns its path. */
export async function put(dir: string, name: string, bytes: Buffer | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/**
 * Runs `fn` and throws if anything in `dir` (the archive's directory: the archive itself and its
 * neighbours) changed meanwhile: nothing created next to the input, the input untouched.
 */
export async function expectDirUnchanged<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const before = await snapshotTree(dir);
  const result = await fn();
  const changes = diffSnapshots(before, await snapshotTree(dir));
  if (changes.length > 0) throw new Error(`${dir} changed:\n${changes.join("\n")}`);
  return result;
}
