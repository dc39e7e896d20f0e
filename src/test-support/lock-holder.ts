/**
 * A separate process for the lock tests (`node dist/test-support/lock-holder.js MODE …`):
 *
 * - `hold <layout> <ms>`: takes the index lock, prints `locked <kind>`, holds it for `ms`
 *   milliseconds (forever when negative, until killed), releases it and prints `released`.
 * - `count <layout> <counter-file> <n>`: `n` times, under the lock: reads the number in
 *   `counter-file` (0 when missing), yields to the event loop, writes it back plus one. Prints `done`.
 *
 * The lock kind follows the environment (`ROCI_LOCK=exclusive-file` forces the fallback). Errors are
 * printed to stderr as `error <code> <message>` with exit status 1.
 */
import { readFile, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { errnoOf, isRociError } from "../errors.ts";
import { lockIndex } from "../store/lock.ts";

async function hold(layout: string, ms: number): Promise<void> {
  const lock = await lockIndex(layout, { timeoutMs: 10_000 });
  process.stdout.write(`locked ${lock.kind}\n`);
  if (ms < 0) {
    setInterval(() => undefined, 1 << 30);
    return;
  }
  await sleep(ms);
  await lock.release();
  process.stdout.write("released\n");
}

async function count(layout: string, counterFile: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const lock = await lockIndex(layout, { timeoutMs: 15_000 });
    try {
      let value = 0;
      try {
        value = Number.parseInt(await readFile(counterFile, "utf8"), 10);
      } catch (error) {
        if (errnoOf(error) !== "ENOENT") throw error;
      }
      // Give the other processes every chance to interleave a read-modify-write, were the lock broken.
      await sleep(Math.random() < 0.5 ? 0 : 1);
      await writeFile(counterFile, `${value + 1}\n`);
    } finally {
      await lock.release();
    }
  }
  process.stdout.write("done\n");
}

async function main(argv: string[]): Promise<void> {
  const [mode, layout, ...rest] = argv;
  if (mode === "hold" && layout !== undefined && rest.length === 1) return hold(layout, Number(rest[0]));
  if (mode === "count" && layout !== undefined && rest.length === 2) {
    return count(layout, rest[0]!, Number(rest[1]));
  }
  throw new Error("usage: lock-holder hold <layout> <ms> | count <layout> <counter-file> <n>");
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const code = isRociError(error) ? error.code : "ERROR";
  process.stderr.write(`error ${code} ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
