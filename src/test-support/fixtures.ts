/**
 * Test fixtures: small OCI image layouts made by the real peer tools (umoci, skopeo) through
 * `test/fixtures/make-fixtures.sh`, built once per machine and shared read-only by every test process.
 *
 * The build lands in `${os.tmpdir()}/roci-fixtures-<sha256(script)[:12]>`, so editing the script rebuilds.
 * It is built in a temp sibling and renamed into place; a process that loses the rename race uses the
 * winner's copy. Never write to these layouts: use {@link copyFixture} for a private, mutable copy.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The repository root: this file is `dist/test-support/fixtures.js` (or `src/test-support/fixtures.ts`). */
export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The fixture script. */
export const fixtureScript: string = join(repoRoot, "test", "fixtures", "make-fixtures.sh");

export interface FixturePlatform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface FixtureDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** An entry of a layout's `index.json`, verbatim. */
export interface FixtureEntry extends FixtureDescriptor {
  annotations?: Record<string, string>;
  platform?: FixturePlatform;
}

/** One image manifest and what it points at. */
export interface FixtureImage {
  manifest: FixtureDescriptor;
  config: FixtureDescriptor;
  layers: FixtureDescriptor[];
  /** From the index entry for images under an index, else from the config. */
  platform: FixturePlatform;
}

/** The expected content of one rootfs path ("file" content is UTF-8 text, mode is octal like "0644"). */
export type FixtureFile =
  | { type: "file"; mode: string; content: string }
  | { type: "dir"; mode: string }
  | { type: "symlink"; target: string };

export interface FixtureLayout {
  /** Absolute path of the layout directory. */
  path: string;
  /** `index.json` `manifests`, verbatim and in order. */
  entries: FixtureEntry[];
}

/** The image config's `config` object as umoci wrote it. */
export interface FixtureImageConfig {
  User: string;
  ExposedPorts: Record<string, Record<string, never>>;
  Env: string[];
  Entrypoint: string[];
  Cmd: string[];
  WorkingDir: string;
  Labels: Record<string, string>;
}

/** A layout with a copy of `single`'s image tagged v1. */
export interface SingleCopy extends FixtureLayout {
  refs: { v1: FixtureDescriptor };
}

/** A path with one defect (see its `defect`); not a usable layout. */
export interface BrokenFixture {
  path: string;
  defect: string;
}

export type PlatformKey = "linux/amd64" | "linux/arm64/v8";

export interface Fixtures {
  /** Absolute path of the directory holding every fixture (and fixtures.json). */
  root: string;
  sourceDateEpoch: number;
  layouts: {
    /** umoci: tag v1, layers base + app, config with entrypoint/cmd/env/workdir/user/labels/port. */
    single: SingleCopy & {
      image: FixtureImage;
      imageConfig: FixtureImageConfig;
      history: { created: string; created_by: string }[];
      diffIds: string[];
      /** The merged rootfs of both layers, by path without a leading slash. */
      files: Record<string, FixtureFile>;
    };
    /** Tag multi -> image index -> linux/amd64 and linux/arm64/v8 manifests (final layout by skopeo). */
    multi: FixtureLayout & {
      refs: { multi: FixtureDescriptor };
      index: FixtureDescriptor;
      platforms: Record<PlatformKey, FixtureImage>;
    };
    /** Tag nested -> outer index -> inner index (= multi's) -> manifests. */
    nested: FixtureLayout & {
      refs: { nested: FixtureDescriptor };
      outer: FixtureDescriptor;
      inner: FixtureDescriptor;
      platforms: Record<PlatformKey, FixtureImage>;
    };
    /** skopeo: base, app (base + 1 layer), latest (= app), zstd, docker (schema 2), one untagged entry. */
    tagged: FixtureLayout & {
      refs: {
        base: FixtureDescriptor;
        app: FixtureDescriptor;
        latest: FixtureDescriptor;
        zstd: FixtureDescriptor;
        docker: FixtureDescriptor;
      };
      untagged: FixtureDescriptor[];
      images: { base: FixtureImage; app: FixtureImage; zstd: FixtureImage; docker: FixtureImage };
    };
    /** Tag-lookup annotation variants. `lookups`: what each tag must resolve to (DESIGN.md order). */
    names: FixtureLayout & {
      images: { fullRef: FixtureDescriptor; containerd: FixtureDescriptor; both: FixtureDescriptor };
      lookups: Record<string, string>;
      ambiguous: { tag: string; digests: string[] };
    };
    /** single with the blob `missing` deleted. */
    "missing-blob": SingleCopy & { missing: FixtureDescriptor };
    /** single with one byte of the blob `corrupt` flipped at `corruptOffset` (same size). */
    "corrupt-blob": SingleCopy & { corrupt: FixtureDescriptor; corruptOffset: number };
    /** single whose blobs are relative symlinks into `store` (absolute path). */
    symlinked: SingleCopy & { store: string };
    /** single at `<root>/at@sign:colon/layout`. */
    weird: SingleCopy;
    "index-bad-json": BrokenFixture;
    "index-not-index": BrokenFixture;
    "index-too-large": BrokenFixture;
    "no-oci-layout": BrokenFixture;
    "bad-version": BrokenFixture;
    "is-a-file": BrokenFixture;
  };
}

export type LayoutName = keyof Fixtures["layouts"];

let cached: Promise<Fixtures> | undefined;

/** Builds the fixtures once per machine (and once per process), and returns fixtures.json with absolute paths. */
export function fixtures(): Promise<Fixtures> {
  cached ??= load();
  return cached;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

async function load(): Promise<Fixtures> {
  const script = await readFile(fixtureScript);
  const hash = createHash("sha256").update(script).digest("hex").slice(0, 12);
  const root = join(tmpdir(), `roci-fixtures-${hash}`);
  if (!(await exists(join(root, "fixtures.json")))) await build(root);
  const raw = JSON.parse(await readFile(join(root, "fixtures.json"), "utf8")) as Fixtures;
  return absolutize(raw, root);
}

async function build(root: string): Promise<void> {
  const work = await mkdtemp(`${root}.tmp-`);
  try {
    await chmod(work, 0o755);
    try {
      await execFileAsync("bash", [fixtureScript, work], {
        env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      const e = error as Error & { stderr?: string };
      throw new Error(`${fixtureScript} failed: ${e.message}\n${e.stderr ?? ""}`);
    }
    try {
      await rename(work, root);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Lost the race: another process renamed its complete build into place first.
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        if (await exists(join(root, "fixtures.json"))) return;
        throw new Error(`${root} exists but has no fixtures.json (a damaged build?): remove it and rerun`);
      }
      throw error;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function absolutize(raw: Fixtures, root: string): Fixtures {
  const layouts = raw.layouts;
  for (const layout of Object.values(layouts) as { path: string }[]) {
    layout.path = join(root, layout.path);
  }
  layouts.symlinked.store = join(root, layouts.symlinked.store);
  return { ...raw, root };
}

const copies: string[] = [];
let cleanupRegistered = false;

/**
 * Copies one fixture into a fresh temp directory (world-traversable, removed when the process exits)
 * and returns the copy's path. The copy keeps the fixture's path relative to the fixtures root, so
 * `weird` stays under `at@sign:colon/` and `symlinked`'s relative blob links still reach their store.
 */
export async function copyFixture(name: LayoutName): Promise<string> {
  const fx = await fixtures();
  const source = fx.layouts[name].path;
  const parent = await mkdtemp(join(tmpdir(), "roci-copy-"));
  copies.push(parent);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once("exit", () => {
      for (const dir of copies) rmSync(dir, { recursive: true, force: true });
    });
  }
  await chmod(parent, 0o755);
  const rel = relative(fx.root, source);
  if (isAbsolute(rel) || rel.startsWith("..")) throw new Error(`fixture ${name} is outside ${fx.root}`);
  const dest = join(parent, rel);
  await mkdir(dirname(dest), { recursive: true });
  await cp(source, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  if (name === "symlinked") {
    const store = fx.layouts.symlinked.store;
    await cp(store, join(parent, relative(fx.root, store)), {
      recursive: true,
      preserveTimestamps: true,
      verbatimSymlinks: true,
    });
  }
  return dest;
}
