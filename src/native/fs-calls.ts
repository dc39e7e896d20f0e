/** xattrs and device nodes (native/fs.c): what applying layers as root needs and Node lacks. */
import { loadAddon } from "./addon.ts";

export interface FsCalls {
  lsetxattr(path: string, name: string, value: Buffer): void;
  lgetxattr(path: string, name: string): Buffer;
  llistxattr(path: string): string[];
  mknod(path: string, mode: number, major: number, minor: number): void;
}

function isFsCalls(exports: unknown): exports is FsCalls {
  const candidate = exports as Partial<Record<keyof FsCalls, unknown>> | null;
  return (
    candidate !== null &&
    ["lsetxattr", "lgetxattr", "llistxattr", "mknod"].every(
      (name) => typeof candidate[name as keyof FsCalls] === "function",
    )
  );
}

/** The calls, or undefined with the reason when the addon was not built here. */
export function fsCalls(): { calls: FsCalls } | { error: string } {
  const state = loadAddon("roci_fs", isFsCalls);
  return "addon" in state ? { calls: state.addon } : state;
}
