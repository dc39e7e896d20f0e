/** The zstd encoder (native/zstd.c over the system libzstd), when it was built here. */
import { loadAddon } from "./addon.ts";

export interface ZstdCalls {
  createEncoder(level: number): object;
  encode(encoder: object, input: Buffer, end: boolean): Buffer;
}

function isZstdCalls(exports: unknown): exports is ZstdCalls {
  const candidate = exports as Partial<Record<keyof ZstdCalls, unknown>> | null;
  return (
    candidate !== null &&
    typeof candidate.createEncoder === "function" &&
    typeof candidate.encode === "function"
  );
}

export function zstdCalls(): { calls: ZstdCalls } | { error: string } {
  const state = loadAddon("roci_zstd", isZstdCalls);
  return "addon" in state ? { calls: state.addon } : state;
}
