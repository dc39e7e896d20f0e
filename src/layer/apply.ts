/**
 * Applies image layers onto a directory with OCI semantics (image-spec layer.md): whiteouts
 * `.wh.<name>` delete from lower layers, an opaque marker `.wh..wh..opq` hides a directory's lower
 * children wherever it appears in the tar, AUFS metadata names are ignored, directories merge and
 * anything else is replaced. Every path stays inside the target: `..`, absolute paths, parents that
 * are symlinks (whichever layer made them) and hard links leaving the tree are refused with
 * UNSAFE_PATH naming entry and layer; symlinks are created verbatim and never followed.
 *
 * Filesystem calls are synchronous on purpose: an unpack is thousands of tiny metadata operations,
 * and a thread-pool round trip each would dominate; decompression still runs off the main thread.
 */
import {
  chmodSync,
  closeSync,
  constants,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  type Stats,
  symlinkSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, posix } from "node:path";
import { errnoOf, isRociError, RociError } from "../errors.ts";
import { type FsCalls, fsCalls } from "../native/fs-calls.ts";
import type { TarEntry, TarHeader } from "../tar/reader.ts";

export const whiteoutPrefix = ".wh.";
export const opaqueMarker = ".wh..wh..opq";

export interface ApplyOptions {
  /**
   * Unprivileged extraction, as umoci's --rootless: no chown, no device nodes (skipped), and
   * directories kept writable by the owner while their layer is applied. Automatic when not root.
   */
  rootless?: boolean;
  /** Said once per kind of thing skipped or mapped. */
  onWarning?: (message: string) => void;
  /** Names that are never touched at the root (roci's own markers). */
  reserved?: readonly string[];
  /**
   * The target is empty and only this applier writes to it: what exists is then known from its own
   * bookkeeping, which saves an lstat per entry (the dominant cost on layers of small files).
   */
  emptyTarget?: boolean;
}

interface Deferred {
  path: string;
  mode: number;
  mtime: number;
}

export class RootfsApplier {
  readonly #root: string;
  readonly #rootless: boolean;
  readonly #options: ApplyOptions;
  readonly #warned = new Set<string>();
  readonly #native: FsCalls | undefined;
  /** Directories known to be real directories inside the root (cleared whenever the tree is reshaped). */
  #knownDirs = new Set<string>([""]);
  /** With an empty target: every path that exists under it. */
  readonly #present: Set<string> | undefined;
  /**
   * This layer's changes to directories it does not list itself (a child added or removed): their
   * mtimes before, restored when the layer is done, as umoci does, so they keep the lower layer's.
   */
  #restore = new Map<string, Date>();

  constructor(root: string, options: ApplyOptions = {}) {
    this.#root = root;
    this.#options = options;
    this.#rootless = options.rootless ?? (process.getuid?.() ?? 0) !== 0;
    const native = fsCalls();
    this.#native = "calls" in native ? native.calls : undefined;
    this.#present = options.emptyTarget ? new Set() : undefined;
  }

  get rootless(): boolean {
    return this.#rootless;
  }

  /** Applies one layer's entries, in order; `layer` names it in errors ("layer 2 sha256:…"). */
  async apply(entries: AsyncIterable<TarEntry>, layer: string): Promise<void> {
    // Unprivileged, each layer must open up the read-only directories it writes into again.
    if (this.#rootless) this.#knownDirs = new Set([""]);
    const unpacked = new Set<string>();
    const deferred: Deferred[] = [];
    this.#restore = new Map();
    try {
      await this.#applyEntries(entries, layer, unpacked, deferred);
    } catch (error) {
      // Errors from deep down (a truncated body, a refused path) name the layer they come from.
      if (isRociError(error) && !error.message.startsWith(layer)) {
        throw new RociError(error.code, `${layer}: ${error.message}`, {
          cause: error,
          subject: error.subject,
        });
      }
      throw error;
    }
    // Directory modes and times last, deepest first: writing children changes a directory's mtime,
    // and a read-only directory could not have received them.
    for (const { path, mode, mtime } of deferred.reverse()) {
      const full = this.#full(path);
      if (!lstatOrUndefined(full)?.isDirectory()) continue; // replaced later in the same layer
      chmodSync(full, mode);
      lutimesSync(full, dateOf(mtime), dateOf(mtime));
    }
    for (const [path, mtime] of this.#restore) {
      if (!unpacked.has(path) && lstatOrUndefined(this.#full(path))?.isDirectory()) {
        lutimesSync(this.#full(path), mtime, mtime);
      }
    }
  }

  async #applyEntries(
    entries: AsyncIterable<TarEntry>,
    layer: string,
    unpacked: Set<string>,
    deferred: Deferred[],
  ): Promise<void> {
    for await (const entry of entries) {
      const path = this.#confine(entry.header.path, entry.header.path, layer);
      if (path === "") {
        // The root itself ("./"): it exists already; its attributes apply, as umoci applies them.
        if (entry.header.type === "dir") {
          this.#owner(this.#root, entry.header, layer);
          deferred.push({ path, mode: entry.header.mode, mtime: entry.header.mtime });
          unpacked.add(path);
        }
        continue;
      }
      const base = posix.basename(path);
      const parent = posix.dirname(path) === "." ? "" : posix.dirname(path);
      if (base === opaqueMarker) {
        // Hides the lower layers' children wherever it stands in the tar: what this layer already
        // unpacked stays, what comes after it is this layer's own.
        this.#prepareParents(path, entry.header.path, layer, deferred);
        this.#removeLowerChildren(parent, unpacked);
        continue;
      }
      // AUFS metadata (.wh..wh.plnk/, .wh..wh.aufs, …) and anything under it is never applied.
      if (aufsMetadata.test(path)) continue;
      if (parent === "" && this.#options.reserved?.includes(base)) {
        this.#warnOnce(
          `reserved-${base}`,
          `${layer}: skipped the entry ${base}: roci uses that name at the root`,
        );
        continue;
      }
      if (base.startsWith(whiteoutPrefix)) {
        this.#whiteout(
          parent,
          base.slice(whiteoutPrefix.length),
          entry.header.path,
          unpacked,
          layer,
          deferred,
        );
        continue;
      }
      await this.#create(path, entry, deferred, layer);
      unpacked.add(path);
    }
  }

  /** Notes the mtime of `path`'s parent before this layer changes what is in it. */
  #rememberParent(path: string): void {
    const slash = path.lastIndexOf("/");
    const parent = slash < 0 ? "" : path.slice(0, slash);
    if (this.#restore.has(parent)) return;
    if (this.#present && !this.#present.has(parent) && parent !== "") return; // made by this unpack
    const info = lstatOrUndefined(this.#full(parent));
    if (info?.isDirectory()) this.#restore.set(parent, info.mtime);
  }

  /** The normalised relative path of an entry, or UNSAFE_PATH: no absolute paths, no `..`. */
  #confine(path: string, original: string, layer: string): string {
    const relative = path.startsWith("./") ? path.slice(2) : path;
    if (plainPath.test(relative)) return relative; // the common case, without splitting
    if (path.startsWith("/")) throw unsafe(layer, original, "absolute path");
    const parts: string[] = [];
    for (const part of path.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") throw unsafe(layer, original, "a `..` component");
      if (part.includes("\0")) throw unsafe(layer, original, "a NUL byte");
      parts.push(part);
    }
    return parts.join("/");
  }

  #full(path: string): string {
    return path === "" ? this.#root : `${this.#root}/${path}`;
  }

  /**
   * Makes sure every parent of `path` is a real directory inside the root, creating missing ones and
   * replacing a lower layer's non-directory; a symlink on the way is refused, never followed.
   */
  #prepareParents(path: string, original: string, layer: string, deferred: Deferred[]): void {
    const parts = path.split("/");
    let current = "";
    for (let i = 0; i < parts.length - 1; i++) {
      current = current ? `${current}/${parts[i]}` : parts[i]!;
      if (this.#knownDirs.has(current)) continue;
      const full = this.#full(current);
      const info = this.#present && !this.#present.has(current) ? undefined : lstatOrUndefined(full);
      if (info?.isSymbolicLink()) throw unsafe(layer, original, `its parent ${current} is a symlink`);
      if (info && !info.isDirectory()) unlinkSync(full);
      if (!info?.isDirectory()) {
        mkdirSync(full, { mode: 0o755 });
        this.#present?.add(current);
      } else if (this.#rootless && (info.mode & 0o700) !== 0o700) {
        // Unprivileged, a lower layer's read-only directory would refuse this layer's children:
        // open it up while the layer is applied, and restore its mode and time afterwards.
        chmodSync(full, info.mode | 0o700);
        deferred.push({ path: current, mode: info.mode & 0o7777, mtime: info.mtimeMs / 1000 });
      }
      this.#knownDirs.add(current);
    }
  }

  #whiteout(
    parent: string,
    name: string,
    original: string,
    unpacked: Set<string>,
    layer: string,
    deferred: Deferred[],
  ): void {
    if (name === "" || name === "." || name === ".." || name.includes("/")) {
      throw unsafe(layer, original, `a whiteout of "${name}"`);
    }
    const target = parent ? `${parent}/${name}` : name;
    if (unpacked.has(target) || (parent === "" && this.#options.reserved?.includes(name))) return;
    this.#prepareParents(target, original, layer, deferred);
    this.#remove(target);
  }

  /** Removes the children of `dir` (a real directory, parents checked) that this layer did not unpack. */
  #removeLowerChildren(dir: string, unpacked: Set<string>): void {
    for (const name of readdirSync(this.#full(dir))) {
      const child = dir ? `${dir}/${name}` : name;
      if (dir === "" && this.#options.reserved?.includes(name)) continue;
      const ours = unpacked.has(child) || hasUnpackedDescendant(child, unpacked);
      // A directory this layer also lists keeps only what this layer put in it, at every depth.
      if (!ours) this.#remove(child);
      else if (this.#existing(child) === "dir") this.#removeLowerChildren(child, unpacked);
    }
  }

  #remove(path: string): void {
    this.#rememberParent(path);
    const wasDir = this.#knownDirs.has(path) || lstatOrUndefined(this.#full(path))?.isDirectory();
    rmSync(this.#full(path), { recursive: true, force: true });
    this.#knownDirs = new Set([""]);
    if (this.#present) {
      this.#present.delete(path);
      if (wasDir)
        for (const known of this.#present) if (known.startsWith(`${path}/`)) this.#present.delete(known);
    }
  }

  /** What is at `path` now, from the bookkeeping when the target started empty, else from lstat. */
  #existing(path: string): "none" | "dir" | "other" {
    if (this.#present && !this.#present.has(path)) return "none";
    const info = lstatOrUndefined(this.#full(path));
    return info === undefined ? "none" : info.isDirectory() ? "dir" : "other";
  }

  async #create(path: string, entry: TarEntry, deferred: Deferred[], layer: string): Promise<void> {
    const { header } = entry;
    this.#prepareParents(path, header.path, layer, deferred);
    const full = this.#full(path);
    const existing = this.#existing(path);
    if (existing === "none") this.#rememberParent(path);
    this.#present?.add(path);
    if (header.type === "dir") {
      if (existing === "other") this.#remove(path);
      if (existing !== "dir") mkdirSync(full, { mode: 0o700 });
      else if (this.#rootless) chmodSync(full, lstatSync(full).mode | 0o700);
      this.#present?.add(path);
      this.#knownDirs.add(path);
      this.#owner(full, header, layer);
      this.#xattrs(full, header);
      deferred.push({ path, mode: header.mode, mtime: header.mtime });
      return;
    }
    if (existing !== "none") {
      this.#remove(path);
      this.#present?.add(path);
    }
    switch (header.type) {
      case "file":
        await writeFile(full, entry);
        break;
      case "symlink":
        symlinkSync(header.linkname, full);
        break;
      case "link":
        this.#hardlink(full, header, layer, deferred);
        break;
      case "char":
      case "block":
      case "fifo":
        if (!this.#special(full, header, layer)) return;
        break;
      default:
        this.#warnOnce(
          `unknown-${header.typeflag}`,
          `${layer}: skipped entries of unknown tar type "${header.typeflag}"`,
        );
        return;
    }
    if (header.type === "link") return; // a hard link shares its target's inode and attributes
    this.#owner(full, header, layer);
    this.#xattrs(full, header);
    if (header.type !== "symlink") chmodSync(full, header.mode);
    lutimesSync(full, dateOf(header.mtime), dateOf(header.mtime));
  }

  #hardlink(full: string, header: TarHeader, layer: string, deferred: Deferred[]): void {
    if (header.linkname.startsWith("/"))
      throw unsafe(layer, header.path, `a hard link to an absolute path (${header.linkname})`);
    const target = this.#confine(header.linkname, header.path, layer);
    if (target === "") throw unsafe(layer, header.path, "a hard link to the root directory");
    this.#prepareParents(target, header.path, layer, deferred);
    const info = lstatOrUndefined(this.#full(target));
    if (!info)
      throw new RociError(
        "CORRUPT_LAYER",
        `${layer}: entry ${header.path}: hard link target ${header.linkname} does not exist`,
        { subject: header.path },
      );
    if (info.isDirectory())
      throw unsafe(layer, header.path, `a hard link to a directory (${header.linkname})`);
    if (info.isSymbolicLink() && escapes(target, readlinkSync(this.#full(target)))) {
      throw unsafe(layer, header.path, `a hard link to a symlink that leaves the root (${header.linkname})`);
    }
    linkSync(this.#full(target), full);
  }

  /** Device nodes and FIFOs need mknod: devices only as root, both only with the native addon. */
  #special(full: string, header: TarHeader, layer: string): boolean {
    if (header.type !== "fifo" && this.#rootless) {
      this.#warnOnce(
        "devices",
        `${layer}: skipped device nodes (${header.path} and any others): not running as root`,
      );
      return false;
    }
    if (!this.#native) {
      this.#warnOnce(
        "native",
        `${layer}: skipped device nodes and FIFOs (${header.path}…): roci's native addon is not built`,
      );
      return false;
    }
    const kind = { char: constants.S_IFCHR, block: constants.S_IFBLK, fifo: constants.S_IFIFO }[
      header.type as "char"
    ];
    this.#native.mknod(full, kind | header.mode, header.devmajor, header.devminor);
    return true;
  }

  #owner(full: string, header: TarHeader, layer: string): void {
    if (this.#rootless) {
      if (header.uid !== 0 || header.gid !== 0) {
        this.#warnOnce(
          "owners",
          `${layer}: ownership not applied (rootless): files belong to the unpacking user`,
        );
      }
      return;
    }
    lchownSync(full, header.uid, header.gid);
  }

  #xattrs(full: string, header: TarHeader): void {
    const names = Object.keys(header.xattrs);
    if (names.length === 0) return;
    if (!this.#native) {
      this.#warnOnce("xattrs-native", "extended attributes not applied: roci's native addon is not built");
      return;
    }
    for (const name of names) {
      try {
        this.#native.lsetxattr(full, name, header.xattrs[name]!);
      } catch (error) {
        this.#warnOnce(
          `xattr-${errnoOf(error)}`,
          `extended attributes not applied where the filesystem refuses them (${errnoOf(error)}, e.g. ${name} on ${header.path})`,
        );
      }
    }
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#options.onWarning?.(message);
  }
}

async function writeFile(full: string, entry: TarEntry): Promise<void> {
  const fd = openSync(
    full,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    for await (const chunk of entry.body as AsyncIterable<Buffer>) {
      for (let written = 0; written < chunk.length; ) written += writeSync(fd, chunk, written);
    }
  } finally {
    closeSync(fd);
  }
}

const aufsMetadata = /(?:^|\/)\.wh\.\.wh\.(?!\.opq$)/;

/** A relative path with nothing to normalise or refuse: no empty, `.` or `..` component, no NUL. */
const plainPath = /^(?!\.\.?(?:\/|$))(?!.*\/\.\.?(?:\/|$))(?!.*\/\/)[^/\0][^\0]*(?<!\/)$/;

/** Seconds as a Date: Node takes a negative number of seconds for "now", a Date before 1970 as it is. */
function dateOf(seconds: number): Date {
  return new Date(seconds * 1000);
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return undefined;
    throw error;
  }
}

function hasUnpackedDescendant(path: string, unpacked: Set<string>): boolean {
  const prefix = `${path}/`;
  for (const candidate of unpacked) if (candidate.startsWith(prefix)) return true;
  return false;
}

/** Whether a symlink at `path` (relative to the root) pointing at `target` resolves above the root. */
function escapes(path: string, target: string): boolean {
  if (target.startsWith("/")) return false; // absolute targets are read against the image's root
  let depth = dirname(path) === "." ? 0 : dirname(path).split("/").length;
  for (const part of target.split("/")) {
    if (part === "..") depth--;
    else if (part !== "" && part !== ".") depth++;
    if (depth < 0) return true;
  }
  return false;
}

function unsafe(layer: string, entry: string, why: string): RociError {
  return new RociError("UNSAFE_PATH", `${layer}: entry ${JSON.stringify(entry)} refused: ${why}`, {
    subject: entry,
    hint: "the layer tries to write outside the target directory; it was not applied further",
  });
}
