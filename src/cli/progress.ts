/**
 * A single self-rewriting status line on stderr, only when stderr is a terminal (and not in CI),
 * at most ten redraws a second. Elsewhere it prints nothing, so logs stay clean.
 */
import type { CliContext } from "./context.ts";

export interface ProgressLine {
  update(text: string): void;
  done(): void;
}

const redrawMs = 100;

export function progressLine(context: CliContext): ProgressLine {
  if (!context.interactive) return { update() {}, done() {} };
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = Date.now();
      if (now - last < redrawMs) return;
      last = now;
      shown = true;
      process.stderr.write(`\r\x1b[2K${text}`);
    },
    done() {
      if (shown) process.stderr.write("\r\x1b[2K");
    },
  };
}
