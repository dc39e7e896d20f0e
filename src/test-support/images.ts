/**
 * Images built in tests from layer tars the test writes itself: well-formed ones through roci's
 * TarWriter, malicious or broken ones block by block (PAX records, GNU long names, lying sizes, no
 * trailer). `buildImage` stores the layers (gzip or not), a config with the matching diff_ids (or the
 * wrong ones, on purpose), a manifest and a tag in a layout, so `roci unpack LAYOUT:TAG` and
 * `umoci unpack --image LAYOUT:TAG` can both be pointed at it.
 *
 * Also a tree scanner and differ, to compare two unpacked root filesystems exactly: path, type, mode,
 * owner, size, content hash, symlink target, device numbers, hard-link groups and mtime.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { gzipSync } from "node:zlib";
import { fetchConfig, fetchManifest } from "../image/documents.ts";
import type { Descriptor, ImageConfig, ImageManifest } from "../spec/documents.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import { BLOCK_SIZE, encodeHeader } from "../tar/header.ts";
import { encodePax } from "../tar/pax.ts";
import { type TarHeaderInput, TarWriter } from "../tar/writer.ts";
import { addBlob, addJsonBlob, type BlobDescriptor, tagged } from "./layout-edit.ts";

import { tempDir } from "./scratch.ts";

export { tempDir };

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");
export const sha256 = (bytes: Uint8Array): string => `sha256:${sha256Hex(bytes)}`;

// ─── well-formed layer tars ──────────────────────────────────────────────────────────────────────

/** One entry of a layer written with TarWriter; `type` defaults to "dir" for paths ending in "/", else "file". */
export interface EntrySpec extends Omit<TarHeaderInput, "type" | "size"> {
  type?: TarHeaderInput["type"];
  content?: string | Buffer;
}

/** Shorthands for the entries most tests need (mtime defaults to `defaultMtime`). */
export const defaultMtime = 1_700_000_000;
export const dir = (path: string, extra: Partial<EntrySpec> = {}): EntrySpec => ({
  path: path.endsWith("/") ? path : `${path}/`,
  type: "dir",
  mode: 0o755,
  ...extra,
});
export const file = (
  path: string,
  content: string | Buffer = "",
  extra: Partial<EntrySpec> = {},
): EntrySpec => ({
  path,
  type: "file",
  mode: 0o644,
  content,
  ...extra,
});
export const symlink = (path: string, target: string, extra: Partial<EntrySpec> = {}): EntrySpec => ({
  path,
  type: "symlink",
  linkname: target,
  ...extra,
});
export const hardlink = (path: string, target: string, extra: Partial<EntrySpec> = {}): EntrySpec => ({
  path,
  type: "link",
  linkname: target,
  ...extra,
});
/** An empty regular file `.wh.<name>` in `parent` ("" for the root). */
export const whiteout = (parent: string, name: string): EntrySpec =>
  file(parent ? `${parent}/.wh.${name}` : `.wh.${name}`);
export const opaque = (parent: string): EntrySpec => file(parent ? `${parent}/.wh..wh..opq` : ".wh..wh..opq");

/** An uncompressed layer tar of `entries`, in order, written by roci's TarWriter. */
export async function layerTar(entries: readonly EntrySpec[]): Promise<Buffer> {
  const writer = new TarWriter();
  const out = buffer(writer.readable);
  try {
    for (const spec of entries) {
      const { content, type, ...rest } = spec;
      const kind = type ?? (spec.path.endsWith("/") ? "dir" : "file");
      const body = kind === "file" ? Buffer.from(content ?? "") : undefined;
      await writer.entry({ mtime: defaultMtime, ...rest, type: kind }, body);
    }
    await writer.finish();
  } catch (error) {
    out.catch(() => {});
    throw error;
  }
  return out;
}

// ─── hand-made (possibly malicious or broken) tars ───────────────────────────────────────────────

/** One entry written block by block, nothing checked: any name, type flag, size and metadata. */
export interface RawEntry {
  /** The USTAR name field (≤ 100 bytes). */
  name: string;
  /** Type flag character; default "0". */
  typeflag?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** The body written after the header (padded to a block unless `unpadded`). */
  data?: Buffer | string;
  /** The header's size field; default the data's length (a larger one lies about the body). */
  size?: number;
  /** A PAX `x` header before the entry, with these records. */
  pax?: Record<string, string>;
  /** A GNU `L` (long name) entry before the entry. */
  gnuLongName?: string;
  /** A GNU `K` (long link name) entry before the entry. */
  gnuLongLink?: string;
  /** Write the body without its padding (the stream then ends there, as a truncated tar would). */
  unpadded?: boolean;
}

const pad = (length: number): Buffer => Buffer.alloc((BLOCK_SIZE - (length % BLOCK_SIZE)) % BLOCK_SIZE);

function metaEntry(name: string, typeflag: string, data: Buffer, gnu: boolean): Buffer {
  return Buffer.concat([
    encodeHeader({ name, mode: 0o644, size: data.length, typeflag, ...(gnu ? { format: "gnu" } : {}) }),
    data,
    pad(data.length),
  ]);
}

/** A tar of raw entries; `trailer: false` leaves out the two zero blocks at the end. */
export function rawTar(entries: readonly RawEntry[], options: { trailer?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.pax) parts.push(metaEntry("PaxHeaders.0/x", "x", encodePax(entry.pax), false));
    if (entry.gnuLongName !== undefined)
      parts.push(metaEntry("././@LongLink", "L", Buffer.from(`${entry.gnuLongName}\0`), true));
    if (entry.gnuLongLink !== undefined)
      parts.push(metaEntry("././@LongLink", "K", Buffer.from(`${entry.gnuLongLink}\0`), true));
    const data = Buffer.from(entry.data ?? "");
    const typeflag = entry.typeflag ?? "0";
    parts.push(
      encodeHeader({
        name: entry.name,
        mode: entry.mode ?? (typeflag === "5" ? 0o755 : 0o644),
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        size: entry.size ?? data.length,
        mtime: entry.mtime ?? defaultMtime,
        typeflag,
        linkname: entry.linkname ?? "",
        ...(entry.devmajor !== undefined ? { devmajor: entry.devmajor, devminor: entry.devminor ?? 0 } : {}),
      }),
      data,
    );
    if (!entry.unpadded) parts.push(pad(data.length));
  }
  if (options.trailer !== false) parts.push(Buffer.alloc(2 * BLOCK_SIZE));
  return Buffer.concat(parts);
}

// ─── images in a layout ──────────────────────────────────────────────────────────────────────────

export type LayerCompression = "gzip" | "none";

export interface LayerInput {
  /** The uncompressed tar. */
  tar: Buffer;
  compression?: LayerCompression;
}

export interface ImageSpec {
  /** Bottom layer first: tars (gzip-compressed) or tars with an explicit compression. */
  layers: ReadonlyArray<Buffer | LayerInput>;
  /** The tag in index.json; default "latest". */
  tag?: string;
  /** The config's `config` object (Entrypoint, Cmd, Env, WorkingDir, User, …). */
  settings?: Record<string, unknown>;
  /** Replaces the computed diff_ids (to build an image whose config lies). */
  diffIds?: string[];
  /** Default: the host's (amd64 for x64, arm64 for arm64). */
  architecture?: string;
}

export interface BuiltImage {
  layout: string;
  tag: string;
  /** `LAYOUT:TAG`, for the CLIs. */
  ref: string;
  manifest: BlobDescriptor;
  config: BlobDescriptor;
  layers: BlobDescriptor[];
  diffIds: string[];
}

const hostArchitecture = (): string =>
  ({ x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x" })[process.arch as "x64"] ??
  process.arch;

/** A new empty OCI layout in a fresh temp directory (world-readable, removed at exit). */
export async function newLayout(prefix = "roci-image-"): Promise<string> {
  const layout = join(await tempDir(prefix), "layout");
  await mkdir(layout, { recursive: true, mode: 0o755 });
  await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(layout, "index.json"),
    JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] }),
  );
  return layout;
}

/**
 * Stores an image made of `spec.layers` in `layout` (which must exist, see `newLayout`) and tags it,
 * replacing any entry with the same tag.
 */
export async function buildImage(layout: string, spec: ImageSpec): Promise<BuiltImage> {
  const tag = spec.tag ?? "latest";
  const layers: BlobDescriptor[] = [];
  const diffIds: string[] = [];
  for (const input of spec.layers) {
    const { tar, compression = "gzip" } = Buffer.isBuffer(input) ? { tar: input } : input;
    diffIds.push(sha256(tar));
    layers.push(
      compression === "gzip"
        ? await addBlob(layout, gzipSync(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        : await addBlob(layout, tar, "application/vnd.oci.image.layer.v1.tar"),
    );
  }
  const config = await addJsonBlob(
    layout,
    {
      created: "2023-11-14T22:13:20Z",
      architecture: spec.architecture ?? hostArchitecture(),
      os: "linux",
      config: spec.settings ?? {},
      rootfs: { type: "layers", diff_ids: spec.diffIds ?? diffIds },
      history: layers.map(() => ({ created: "2023-11-14T22:13:20Z", created_by: "roci test" })),
    },
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = await addJsonBlob(
    layout,
    {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config,
      layers,
    },
    "application/vnd.oci.image.manifest.v1+json",
  );
  const indexPath = join(layout, "index.json");
  const index = JSON.parse(await readFile(indexPath, "utf8")) as { manifests: BlobDescriptor[] };
  index.manifests = index.manifests.filter(
    (entry) =>
      (entry.annotations as Record<string, string> | undefined)?.["org.opencontainers.image.ref.name"] !==
      tag,
  );
  index.manifests.push(tagged(manifest, tag));
  await writeFile(
    indexPath,
    JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", ...index }),
  );
  return { layout, tag, ref: `${layout}:${tag}`, manifest, config, layers, diffIds: spec.diffIds ?? diffIds };
}

/** The store, manifest and config of a built image, for the library calls (unpackImage, exportImage). */
export async function openImage(
  image: BuiltImage,
): Promise<{ store: LayoutReader; manifest: ImageManifest; config: ImageConfig }> {
  const store = await LayoutReader.open(image.layout);
  const manifest = await fetchManifest(store, image.manifest as Descriptor);
  const config = await fetchConfig(store, manifest.value.config);
  return { store, manifest: manifest.value, config: config.value };
}

/** `size` bytes from a xorshift32 generator seeded by `seed`, as base64 text: the same in every run. */
export function seededText(seed: number, size: number): Buffer {
  const words = new Uint32Array(Math.ceil((size * 3) / 16) + 1);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(Buffer.from(words.buffer).toString("base64").slice(0, size));
}

/**
 * A two-layer "multi-file" image: hard links (three names for one file), absolute, relative,
 * dangling and long-target symlinks, empty files, setuid/setgid/sticky bits, other owners, a FIFO,
 * char and block devices, a 40-level deep tree, Unicode names, a path needing PAX, varied mtimes;
 * then a layer of whiteouts (file, directory, one name of a hard-link group), an opaque directory,
 * a file replaced by a directory and a directory by a file, a changed file and directory mode, and
 * a hard link to a file of the lower layer. Every parent a layer touches is listed in that layer.
 */
export async function multiFileLayers(): Promise<Buffer[]> {
  const deep = Array.from({ length: 40 }, (_, i) => `d${i}`);
  const longDir = `long/${"d".repeat(120)}`;
  const lower = await layerTar([
    dir("bin"),
    file("bin/sh", "#!/bin/sh\necho hi\n", { mode: 0o755 }),
    hardlink("bin/sh-hard1", "bin/sh"),
    hardlink("bin/sh-hard2", "bin/sh"),
    dir("dev"),
    { path: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 },
    { path: "dev/loop9", type: "block", mode: 0o660, devmajor: 7, devminor: 9, gid: 6 },
    dir("etc"),
    file("etc/empty"),
    file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    file("etc/shadow", "secret\n", { mode: 0o640, gid: 42 }),
    symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
    symlink("etc/long-target", `../${"t".repeat(150)}/x`),
    dir("run"),
    { path: "run/fifo", type: "fifo", mode: 0o620 },
    dir("srv", { mode: 0o750, uid: 33, gid: 33 }),
    file("srv/www", "www", { uid: 33, gid: 33, mtime: 1_600_000_000 }),
    dir("tmp", { mode: 0o1777 }),
    dir("usr"),
    dir("usr/bin"),
    file("usr/bin/owned", "owned\n", { uid: 1000, gid: 1000, mtime: 1_234_567_890 }),
    symlink("usr/bin/sh", "../../bin/sh"),
    file("usr/bin/su", "su\n", { mode: 0o4755 }),
    file("usr/bin/wall", "wall\n", { mode: 0o2755, gid: 5 }),
    dir("unicode"),
    file("unicode/héllo wörld.txt", "hé\n"),
    dir("unicode/日本語"),
    file("unicode/日本語/ファイル", "x"),
    file("unicode/🎉", "party"),
    dir("long"),
    dir(longDir),
    file(`${longDir}/${"f".repeat(200)}`, "long\n"),
    dir("deep"),
    ...deep.map((_, i) => dir(`deep/${deep.slice(0, i + 1).join("/")}`)),
    file(`deep/${deep.join("/")}/leaf`, "leaf\n"),
    symlink("dangling", "does/not/exist"),
    symlink("lib", "usr/lib"),
    dir("replace"),
    file("replace/was-file", "f"),
    dir("replace/was-dir"),
    file("replace/was-dir/child", "c"),
    dir("opq"),
    file("opq/lower", "lower"),
    dir("opq/sub"),
    file("opq/sub/x", "x"),
    dir("gone"),
    file("gone/a", "a"),
    file("big", seededText(1, 300_000)),
  ]);
  const upper = await layerTar([
    dir("bin"),
    whiteout("bin", "sh-hard2"),
    dir("deep/d0/d1"),
    whiteout("deep/d0/d1", "d2"),
    dir("etc"),
    whiteout("etc", "empty"),
    file("etc/passwd", "root:x:0:0::/root:/bin/bash\n"),
    hardlink("etc/sh-from-lower", "bin/sh"),
    whiteout("", "gone"),
    dir("opq", { mode: 0o711 }),
    opaque("opq"),
    file("opq/upper", "upper"),
    dir("replace"),
    file("replace/was-dir", "now a file", { mode: 0o600 }),
    dir("replace/was-file", { mode: 0o700 }),
    dir("srv", { mode: 0o700, uid: 33, gid: 33 }),
  ]);
  return [lower, upper];
}

/** The file of a blob in a layout. */
export const blobPath = (layout: string, digest: string): string =>
  join(layout, "blobs", ...digest.split(":"));

// ─── comparing trees ─────────────────────────────────────────────────────────────────────────────

export interface TreeNode {
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";
  /** Permission bits with setuid/setgid/sticky, octal ("4755"). Not compared for symlinks. */
  mode: string;
  uid: number;
  gid: number;
  /** Files: bytes. */
  size?: number;
  /** Files: sha256 of the content. */
  sha256?: string;
  /** Files of at most 64 bytes: the content as text (for readable expectations; not compared). */
  text?: string;
  /** Symlinks: the target text. */
  target?: string;
  /** Devices: "major:minor". */
  rdev?: string;
  /** Files with more than one link: the first path (bytewise order) of its inode group in this tree. */
  linkGroup?: string;
  /** Modification time in nanoseconds. */
  mtimeNs: bigint;
}

export type Tree = Map<string, TreeNode>;

function typeOf(st: import("node:fs").BigIntStats): TreeNode["type"] {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  return "socket";
}

/**
 * Every path under `root` ("." for the root itself), never following symlinks. `exclude` names
 * top-level entries to leave out.
 */
export async function scanTree(root: string, options: { exclude?: readonly string[] } = {}): Promise<Tree> {
  const nodes: Tree = new Map();
  const inodes = new Map<string, string[]>();
  const visit = async (full: string, rel: string): Promise<void> => {
    const st = await lstat(full, { bigint: true });
    const type = typeOf(st);
    const node: TreeNode = {
      type,
      mode: (st.mode & 0o7777n).toString(8).padStart(4, "0"),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
    };
    if (type === "file") {
      const content = await readFile(full);
      node.size = content.length;
      node.sha256 = sha256Hex(content);
      if (content.length <= 64) node.text = content.toString("utf8");
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        inodes.set(key, [...(inodes.get(key) ?? []), rel]);
      }
    }
    if (type === "symlink") node.target = await readlink(full);
    if (type === "char" || type === "block") {
      node.rdev = `${Number((st.rdev >> 8n) & 0xfffn)}:${Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n))}`;
    }
    nodes.set(rel, node);
    if (type === "dir") {
      for (const name of await readdir(full)) {
        if (rel === "." && options.exclude?.includes(name)) continue;
        await visit(join(full, name), rel === "." ? name : `${rel}/${name}`);
      }
    }
  };
  await visit(root, ".");
  for (const paths of inodes.values()) {
    if (paths.length < 2) continue;
    const first = [...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))[0]!;
    for (const path of paths) nodes.get(path)!.linkGroup = first;
  }
  return nodes;
}

export interface DiffOptions {
  /** Which mtimes to compare (default "all"): "none", or "non-dir" (files, symlinks, … only). */
  mtime?: "all" | "non-dir" | "none";
  /** Paths whose mtime is not compared (e.g. "." — the target directory itself). */
  ignoreMtimeOf?: readonly string[];
  /** Compare mtimes at this resolution in ns (default 1: exact). */
  mtimeResolutionNs?: bigint;
  /** Leave out uid/gid (rootless unpacks). */
  owners?: boolean;
}

const fields = ["type", "mode", "uid", "gid", "size", "sha256", "target", "rdev", "linkGroup"] as const;

/** The differences between two trees, one line each ("path: field a ≠ b"); empty when they match. */
export function diffTrees(a: Tree, b: Tree, options: DiffOptions = {}): string[] {
  const out: string[] = [];
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  const mtimes = options.mtime ?? "all";
  const resolution = options.mtimeResolutionNs ?? 1n;
  for (const path of paths) {
    const x = a.get(path);
    const y = b.get(path);
    if (!x || !y) {
      out.push(
        `${path}: ${x ? `only in the first tree (${x.type})` : `only in the second tree (${y!.type})`}`,
      );
      continue;
    }
    for (const field of fields) {
      if (field === "mode" && x.type === "symlink" && y.type === "symlink") continue;
      if ((field === "uid" || field === "gid") && options.owners === false) continue;
      if (x[field] !== y[field]) out.push(`${path}: ${field} ${String(x[field])} ≠ ${String(y[field])}`);
    }
    const compareMtime = mtimes === "all" || (mtimes === "non-dir" && x.type !== "dir" && y.type !== "dir");
    if (
      compareMtime &&
      !options.ignoreMtimeOf?.includes(path) &&
      x.mtimeNs / resolution !== y.mtimeNs / resolution
    ) {
      out.push(`${path}: mtime ${formatNs(x.mtimeNs)} ≠ ${formatNs(y.mtimeNs)} (${x.type})`);
    }
  }
  return out;
}

const formatNs = (ns: bigint): string =>
  `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}`;

/** A readable listing of a tree, for failure messages. */
export function formatTree(tree: Tree): string {
  return [...tree.entries()]
    .sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))
    .map(([path, n]) =>
      [
        path,
        n.type,
        n.mode,
        `${n.uid}:${n.gid}`,
        n.size ?? "",
        n.target ?? "",
        n.linkGroup ? `=${n.linkGroup}` : "",
        formatNs(n.mtimeNs),
      ].join(" "),
    )
    .join("\n");
}

/**
 * Path → "dir 0755", "file 0644 \"content\"" (sha256 beyond 64 bytes) or "symlink -> target", without
 * the root itself: a compact object for exact expectations.
 */
export function treeSummary(
  tree: Tree,
  options: { exclude?: readonly string[] } = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, node] of [...tree.entries()].sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))) {
    if (path === "." || options.exclude?.includes(path)) continue;
    out[path] =
      node.type === "symlink"
        ? `symlink -> ${node.target}`
        : node.type === "file"
          ? `file ${node.mode} ${node.text !== undefined ? JSON.stringify(node.text) : node.sha256}`
          : `${node.type} ${node.mode}`;
  }
  return out;
}
