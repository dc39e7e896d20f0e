/** Printing for people (aligned text) and for scripts (JSON), and the byte-exact raw outputs. */
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CliContext } from "./context.ts";

export function writeJson(context: CliContext, value: unknown): void {
  context.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function writeLines(context: CliContext, lines: readonly string[]): void {
  if (lines.length > 0) context.stdout.write(`${lines.join("\n")}\n`);
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

const units = ["B", "KiB", "MiB", "GiB", "TiB"];

export function humanBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** Exact bytes to stdout: what `sha256sum` sees is what the store holds. */
export async function writeRaw(context: CliContext, source: Uint8Array | Readable): Promise<void> {
  if (source instanceof Uint8Array) {
    await new Promise<void>((resolve, reject) =>
      context.stdout.write(source, (error) => (error ? reject(error) : resolve())),
    );
    return;
  }
  await pipeline(source, context.stdout as Writable, { end: false });
}
