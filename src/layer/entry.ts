/** One entry of a layer, as roci writes it and reads it back: the tar header that matters. */
import type { Readable } from "node:stream";

export type EntryType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

export interface LayerEntry {
  /** Relative, `/`-separated, no leading `./` or `/`, no trailing slash. */
  path: string;
  type: EntryType;
  /** Permission bits, setuid/setgid/sticky included (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  /** Bytes of a file's content; 0 for everything else. */
  size: number;
  /** A symlink's target as written, or a hard link's target path in the layer. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
  /** A file's content (a stream, or the bytes of a small file), opened only when the entry is written. */
  open?: () => Readable | Buffer | Promise<Readable | Buffer>;
}

/** Bytewise order of UTF-8 paths: a parent (a prefix) always comes before its children, whatever the locale. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
