/**
 * Runs the built CLI (`dist/cli/main.js`) or any program, optionally as the unprivileged uid/gid 65534
 * ("nobody") through `setpriv`, always with argument arrays (never a shell).
 *
 * uid 65534 must be able to read the CLI. If the checkout is not readable for it (e.g. it sits under a
 * 0700 home directory in CI), `dist`, `package.json` and the runtime dependencies are copied once per
 * process into a world-readable temp directory and the CLI runs from there.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { chmod, chown, cp, lstat, mkdtemp, readdir, readFile, stat } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "./fixtures.ts";

export const NOBODY_UID = 65534;
export const NOBODY_GID = 65534;

/** `setpriv` arguments that drop to uid/gid 65534 with no supplementary groups. */
export const nobodyArgs: readonly string[] = [
  `--reuid=${NOBODY_UID}`,
  `--regid=${NOBODY_GID}`,
  "--clear-groups",
];

export interface RunOptions {
  /** Run as uid/gid 65534 via setpriv (needs root). */
  asNobody?: boolean;
  /** Added to (and overriding) the inherited environment, from which ROCI_* and NODE_TEST_CONTEXT are dropped. */
  env?: Record<string, string>;
  /** Written to stdin; stdin is closed either way. */
  input?: Buffer;
  /** Working directory; default: the current one, or os.tmpdir() as nobody. */
  cwd?: string;
  /** Kill (SIGKILL) after this many milliseconds; the code is then 137. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code, or 128 + signal number when killed by a signal. */
  code: number;
  stdout: Buffer;
  stderr: string;
}

const cleanupDirs: string[] = [];
function removeAtExit(dir: string): void {
  if (cleanupDirs.length === 0) {
    process.once("exit", () => {
      for (const d of cleanupDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  cleanupDirs.push(dir);
}

function spawnCollect(
  file: string,
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; input?: Buffer; timeoutMs?: number },
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["pipe", "pipe", "pipe"],
      ...(options.timeoutMs === undefined
        ? {}
        : { timeout: options.timeoutMs, killSignal: "SIGKILL" as const }),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.stdin.on("error", () => undefined); // EPIPE when the child exits without reading stdin
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const signalCode = signal === null ? 1 : 128 + osConstants.signals[signal];
      resolvePromise({
        code: code ?? signalCode,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    child.stdin.end(options.input);
  });
}

function baseEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("ROCI_") || key === "NODE_TEST_CONTEXT") continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

let nobodyHome: Promise<string> | undefined;
/** A home directory owned by uid 65534 (removed at exit). */
export function nobodyHomeDir(): Promise<string> {
  nobodyHome ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "roci-nobody-home-"));
    removeAtExit(dir);
    await chown(dir, NOBODY_UID, NOBODY_GID);
    await chmod(dir, 0o755);
    return dir;
  })();
  return nobodyHome;
}

/**
 * Runs `file args` (optionally as nobody) and collects its output. Never throws for a non-zero exit.
 */
export async function runProgram(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  if (options.asNobody) {
    if (process.getuid?.() !== 0) throw new Error("asNobody needs root (setpriv)");
    const home = await nobodyHomeDir();
    return spawnCollect("setpriv", [...nobodyArgs, file, ...args], {
      cwd: options.cwd ?? tmpdir(),
      env: baseEnv({ HOME: home, ...options.env }),
      input: options.input,
      timeoutMs: options.timeoutMs,
    });
  }
  return spawnCollect(file, args, {
    cwd: options.cwd ?? process.cwd(),
    env: baseEnv(options.env),
    input: options.input,
    timeoutMs: options.timeoutMs,
  });
}

/** The runtime dependency closure of the package (top-level node_modules names). */
async function runtimeDependencies(root: string): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (pkgJson: string): Promise<void> => {
    const pkg = JSON.parse(await readFile(pkgJson, "utf8")) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    for (const name of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      if (seen.has(name)) continue;
      const dir = join(root, "node_modules", name);
      try {
        await stat(dir);
      } catch {
        continue; // an optional dependency that is not installed, or one nested under its dependent
      }
      seen.add(name);
      await visit(join(dir, "package.json"));
    }
  };
  await visit(join(root, "package.json"));
  return [...seen].sort();
}

/** Paths uid 65534 must be able to read to run the CLI from `root`. */
async function cliPaths(root: string): Promise<string[]> {
  const deps = await runtimeDependencies(root);
  return [join(root, "package.json"), join(root, "dist"), ...deps.map((d) => join(root, "node_modules", d))];
}

/** Node code run as nobody: exits 0 if every path (recursively) is readable (and directories searchable). */
const probeScript = `
const fs = require("node:fs"), path = require("node:path");
const check = (p) => {
  const st = fs.statSync(p);
  fs.accessSync(p, st.isDirectory() ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.R_OK);
  if (st.isDirectory()) for (const n of fs.readdirSync(p)) check(path.join(p, n));
};
for (const p of process.argv.slice(1)) check(p);
`;

let cliRootForNobody: Promise<string> | undefined;

/**
 * The directory to run the CLI from as nobody: the repository itself if uid 65534 can read what the
 * CLI needs, else a world-readable copy of `dist`, `package.json` and the runtime dependencies.
 */
export function nobodyCliRoot(): Promise<string> {
  cliRootForNobody ??= (async () => {
    const paths = await cliPaths(repoRoot);
    const probe = await runProgram(process.execPath, ["-e", probeScript, ...paths], {
      asNobody: true,
      cwd: "/",
    });
    if (probe.code === 0) return repoRoot;
    const copy = await mkdtemp(join(tmpdir(), "roci-cli-"));
    removeAtExit(copy);
    await chmod(copy, 0o755);
    await cp(join(repoRoot, "package.json"), join(copy, "package.json"));
    await cp(join(repoRoot, "dist"), join(copy, "dist"), { recursive: true, verbatimSymlinks: true });
    for (const dep of await runtimeDependencies(repoRoot)) {
      await cp(join(repoRoot, "node_modules", dep), join(copy, "node_modules", dep), {
        recursive: true,
        verbatimSymlinks: true,
      });
    }
    await makeWorldReadable(copy);
    return copy;
  })();
  return cliRootForNobody;
}

async function makeWorldReadable(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    await chmod(path, (st.mode & 0o7777) | 0o555);
    for (const name of await readdir(path)) await makeWorldReadable(join(path, name));
  } else {
    await chmod(path, (st.mode & 0o7777) | 0o444 | (st.mode & 0o100 ? 0o111 : 0));
  }
}

/** Checks that `path` is readable by uid 65534 (with every directory above it searchable). */
export async function readableByNobody(path: string): Promise<boolean> {
  const r = await runProgram(process.execPath, ["-e", probeScript, path], { asNobody: true, cwd: "/" });
  return r.code === 0;
}

/**
 * Runs `node <repo>/dist/cli/main.js ...args`. With `asNobody`, as uid/gid 65534 with HOME set to a
 * directory it owns, from a world-readable copy of the CLI if the checkout is not readable for it.
 */
export async function runRoci(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const root = options.asNobody ? await nobodyCliRoot() : repoRoot;
  return runProgram(process.execPath, [join(root, "dist", "cli", "main.js"), ...args], options);
}
