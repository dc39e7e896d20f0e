/** What every command gets: the global flags, and where to print. */
import type { Writable } from "node:stream";

export type OutputFormat = "text" | "json";

export interface GlobalOptions {
  format: OutputFormat;
  readOnly: boolean;
  debug: boolean;
}

export interface CliContext extends GlobalOptions {
  stdout: Writable;
  /** Messages for people: warnings, progress, errors. Never data. */
  warn(message: string): void;
  /** Whether stderr is a terminal that can show live progress. */
  interactive: boolean;
}
