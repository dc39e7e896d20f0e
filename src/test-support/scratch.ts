/** Temp directories for tests: fresh, world-traversable (uid 65534 reads below them), removed at exit. */
import { rmSync } from "node:fs";
import { chmod, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cleanup: string[] = [];

export function removeAtExit(dir: string): void {
  if (cleanup.length === 0) {
    process.once("exit", () => {
      for (const d of cleanup) rmSync(d, { recursive: true, force: true });
    });
  }
  cleanup.push(dir);
}

export async function tempDir(prefix = "roci-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  removeAtExit(dir);
  await chmod(dir, 0o755);
  return dir;
}
