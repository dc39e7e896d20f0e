/**
 * The read-only guarantee (DESIGN.md), proven for every read command of the CLI:
 *
 * - on a read-only bind mount of the fixtures (every write fails with EROFS, even for root);
 * - on a `chmod -R a-w` copy read by uid 65534 (every write fails with EACCES);
 * - under strace, where not a single syscall that could write, create, rename, remove, link, chmod,
 *   touch, truncate or lock anything under the layout may appear — attempted-and-failed included;
 * - with `--read-only` and `ROCI_READ_ONLY=1`, which the read commands accept and which change nothing.
 *
 * Each run snapshots the whole fixtures tree before and after (paths, types, sizes, mtimes, ctimes,
 * modes, owners, inodes) and checks the command's output against the digests fixtures.json records.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type FixtureDescriptor,
  type FixtureEntry,
  fixtures,
  type PlatformKey,
  repoRoot,
} from "../test-support/fixtures.ts";
import {
  diffSnapshots,
  snapshotTree,
  withReadOnlyBindMount,
  withUnwritableCopy,
} from "../test-support/readonly.ts";
import { type RunResult, runProgram, runRoci } from "../test-support/run.ts";

const fx = await fixtures();
const isRoot = process.getuid?.() === 0;
const needsRoot = isRoot ? false : "needs root (mount --bind, chmod of a copy, setpriv to uid 65534)";
const sha256 = (bytes: Uint8Array): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const cli = join(repoRoot, "dist", "cli", "main.js");

// ---------------------------------------------------------------------------------------------------
// What is read, and what each read command must print

/** Index layouts are narrowed to the host's platform; on a host that is neither, pin linux/amd64. */
const hostKey: PlatformKey = process.arch === "arm64" ? "linux/arm64/v8" : "linux/amd64";
const pinHost = process.arch === "x64" || process.arch === "arm64" ? [] : ["--platform", "linux/amd64"];

interface Subject {
  name: "single" | "multi" | "nested" | "symlinked" | "weird";
  /** The layout's path relative to the fixtures root (kept under a mount or a copy of the root). */
  rel: string;
  tag: string;
  /** What `PATH:TAG` resolves to. */
  resolved: FixtureDescriptor;
  entries: FixtureEntry[];
  tags: string[];
  /** The manifest and config chosen for the host platform. */
  manifest: string;
  config: string;
  /** The linux/arm64/v8 manifest, for index layouts. */
  arm64?: string;
  /** A layer blob to read with `blob`. */
  blob: FixtureDescriptor;
}

const relOf = (path: string): string => {
  const rel = relative(fx.root, path);
  assert.ok(!rel.startsWith("..") && !isAbsolute(rel), `${path} is outside ${fx.root}`);
  return rel;
};

const singleLike = (name: "single" | "symlinked" | "weird", layer: 0 | 1): Subject => {
  const image = fx.layouts.single.image;
  const layout = fx.layouts[name];
  return {
    name,
    rel: relOf(layout.path),
    tag: "v1",
    resolved: layout.refs.v1,
    entries: layout.entries,
    tags: ["v1"],
    manifest: image.manifest.digest,
    config: image.config.digest,
    blob: image.layers[layer]!,
  };
};

const multi = fx.layouts.multi;
const nested = fx.layouts.nested;
const subjects: Subject[] = [
  singleLike("single", 0),
  {
    name: "multi",
    rel: relOf(multi.path),
    tag: "multi",
    resolved: multi.index,
    entries: multi.entries,
    tags: ["multi"],
    manifest: multi.platforms[hostKey].manifest.digest,
    config: multi.platforms[hostKey].config.digest,
    arm64: multi.platforms["linux/arm64/v8"].manifest.digest,
    blob: multi.platforms["linux/arm64/v8"].layers.at(-1)!,
  },
  {
    name: "nested",
    rel: relOf(nested.path),
    tag: "nested",
    resolved: nested.outer,
    entries: nested.entries,
    tags: ["nested"],
    manifest: nested.platforms[hostKey].manifest.digest,
    config: nested.platforms[hostKey].config.digest,
    arm64: nested.platforms["linux/arm64/v8"].manifest.digest,
    blob: nested.platforms["linux/amd64"].layers.at(-1)!,
  },
  singleLike("symlinked", 1),
  singleLike("weird", 1),
];

interface ReadCommand {
  label: string;
  /** The arguments for a layout at `layout`; undefined when the command does not apply to the subject. */
  args(s: Subject, layout: string): string[] | undefined;
  /** Checks stdout of the text run. */
  text(out: Buffer, s: Subject, layout: string): void;
  /** Checks stdout of the `--format json` run; commands printing raw bytes have none. */
  json?(out: Buffer, s: Subject, layout: string): void;
}

const parseJson = (out: Buffer): unknown => JSON.parse(out.toString("utf8"));
const lines = (out: Buffer): string[] => out.toString("utf8").split("\n").slice(0, -1);

const checkVerifyText = (out: Buffer): void => {
  const text = out.toString("utf8");
  assert.doesNotMatch(text, /ERROR|WARNING/);
  assert.match(lines(out).at(-1) ?? "", /^ok: .*0 error\(s\), 0 warning\(s\)$/);
};
const checkVerifyJson = (out: Buffer, _s: Subject, layout: string): void => {
  const report = parseJson(out) as { ok: boolean; problems: unknown[]; location: string };
  assert.equal(report.ok, true);
  assert.deepEqual(report.problems, []);
  assert.equal(report.location, layout);
};

const readCommands: ReadCommand[] = [
  {
    label: "ls LAYOUT",
    args: (_s, layout) => ["ls", layout],
    text: (out, s) => {
      const rows = lines(out);
      assert.match(rows[0] ?? "", /^NAME\s+DIGEST\s+MEDIA TYPE\s+PLATFORMS$/);
      assert.equal(rows.length, s.entries.length + 1);
      s.entries.forEach((entry, i) => {
        assert.ok(rows[i + 1]?.includes(entry.digest), `row ${i + 1} names ${entry.digest}`);
      });
    },
    json: (out, s) => {
      const entries = parseJson(out) as { digest: string; names: string[] }[];
      assert.deepEqual(
        entries.map((e) => e.digest),
        s.entries.map((e) => e.digest),
      );
      assert.deepEqual(
        entries.flatMap((e) => e.names),
        s.tags,
      );
    },
  },
  {
    label: "tags LAYOUT",
    args: (_s, layout) => ["tags", layout],
    text: (out, s) => assert.deepEqual(lines(out), s.tags),
    json: (out, s) => assert.deepEqual(parseJson(out), s.tags),
  },
  {
    label: "inspect REF",
    args: (s, layout) => ["inspect", ...pinHost, `${layout}:${s.tag}`],
    text: (out, s) => {
      const text = out.toString("utf8");
      assert.ok(text.includes(`Digest:      ${s.resolved.digest}\n`), "names the resolved digest");
      assert.ok(text.includes(`Config:      ${s.config}\n`), "names the config digest");
    },
    json: (out, s, layout) => {
      const result = parseJson(out) as {
        location: string;
        resolved: FixtureDescriptor;
        manifest: { digest: string };
        config: { digest: string };
      };
      assert.equal(result.location, layout);
      assert.deepEqual(result.resolved, s.resolved);
      assert.equal(result.manifest.digest, s.manifest);
      assert.equal(result.config.digest, s.config);
    },
  },
  {
    label: "inspect --platform linux/arm64 REF",
    args: (s, layout) =>
      s.arm64 === undefined ? undefined : ["inspect", "--platform", "linux/arm64", `${layout}:${s.tag}`],
    text: (out, s) =>
      assert.ok(out.toString("utf8").includes(`Manifest:    ${s.arm64}`), "names the arm64 manifest"),
    json: (out, s) => {
      const result = parseJson(out) as { resolved: FixtureDescriptor; manifest: { digest: string } };
      assert.deepEqual(result.resolved, s.resolved);
      assert.equal(result.manifest.digest, s.arm64);
    },
  },
  {
    label: "digest REF",
    args: (s, layout) => ["digest", `${layout}:${s.tag}`],
    text: (out, s) => assert.equal(out.toString("utf8"), `${s.resolved.digest}\n`),
    json: (out, s) => assert.deepEqual(parseJson(out), s.resolved),
  },
  {
    label: "manifest REF",
    args: (s, layout) => ["manifest", `${layout}:${s.tag}`],
    text: (out, s) => {
      assert.equal(sha256(out), s.resolved.digest, "the bytes hash to the resolved digest");
      assert.equal(out.length, s.resolved.size);
    },
  },
  {
    label: "config REF",
    args: (s, layout) => ["config", ...pinHost, `${layout}:${s.tag}`],
    text: (out, s) => assert.equal(sha256(out), s.config, "the bytes hash to the config digest"),
  },
  {
    label: "blob LAYOUT DIGEST",
    args: (s, layout) => ["blob", layout, s.blob.digest],
    text: (out, s) => {
      assert.equal(sha256(out), s.blob.digest, "the bytes hash to the requested digest");
      assert.equal(out.length, s.blob.size);
    },
  },
  {
    label: "export REF",
    args: (s, layout) => ["export", ...pinHost, `${layout}:${s.tag}`],
    text: (out) => {
      // A tar of the image's filesystem: whole 512-byte blocks ending in the two zero blocks.
      assert.ok(out.length >= 3 * 512 && out.length % 512 === 0, `a tar (${out.length} bytes)`);
      assert.ok(
        out.subarray(-1024).every((byte) => byte === 0),
        "ends with the end-of-archive blocks",
      );
    },
  },
  {
    label: "verify LAYOUT",
    args: (_s, layout) => ["verify", layout],
    text: checkVerifyText,
    json: checkVerifyJson,
  },
  {
    label: "verify REF",
    args: (s, layout) => ["verify", `${layout}:${s.tag}`],
    text: checkVerifyText,
    json: checkVerifyJson,
  },
];

interface Invocation {
  title: string;
  subject: Subject;
  command: ReadCommand;
  json: boolean;
  args(layout: string): string[];
}

/**
 * Every read command on the subjects, as text and, on the subjects `json` accepts, also as JSON (for
 * the commands that print a model; the others print the same raw bytes either way).
 */
function invocations(
  withJson: (s: Subject) => boolean,
  only: (s: Subject) => boolean = () => true,
): Invocation[] {
  const out: Invocation[] = [];
  for (const subject of subjects.filter(only)) {
    for (const command of readCommands) {
      if (command.args(subject, "/x") === undefined) continue;
      for (const json of command.json && withJson(subject) ? [false, true] : [false]) {
        out.push({
          title: `${command.label}${json ? " --format json" : ""} on ${subject.name}`,
          subject,
          command,
          json,
          args: (layout) => [...(json ? ["--format", "json"] : []), ...command.args(subject, layout)!],
        });
      }
    }
  }
  return out;
}

function checkOutput(inv: Invocation, result: RunResult, layout: string): void {
  const context = `roci ${inv.args(layout).join(" ")}\nstderr: ${result.stderr}`;
  assert.equal(result.code, 0, context);
  assert.equal(result.stderr, "", `no warnings or errors: ${context}`);
  if (inv.json) inv.command.json!(result.stdout, inv.subject, layout);
  else inv.command.text(result.stdout, inv.subject, layout);
}

/** No lock file and no ingest directory: the two things buildkit/containerd used to create. */
function assertNoLockOrIngest(layout: string): void {
  assert.equal(existsSync(join(layout, "index.json.lock")), false, `${layout}/index.json.lock`);
  assert.equal(existsSync(join(layout, "ingest")), false, `${layout}/ingest`);
}

/** Runs `fn` between two snapshots of `root`; fails listing every entry that changed. */
async function unchanged<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const before = await snapshotTree(root);
  const result = await fn();
  assert.deepEqual(diffSnapshots(before, await snapshotTree(root)), [], `${root} changed`);
  return result;
}

/**
 * Enters a callback-style scope (a mount, a copy) in a `before` hook and leaves it in `after`:
 * resolves with the scope's path once entered; `release` ends it and waits for its clean-up.
 */
async function enter(
  scope: (src: string, fn: (path: string) => Promise<void>) => Promise<void>,
  src: string,
): Promise<{ path: string; release(): Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  let entered!: (path: string) => void;
  const path = new Promise<string>((r) => {
    entered = r;
  });
  const done = scope(src, async (p) => {
    entered(p);
    await released;
  });
  const ended = done.then(() => {
    throw new Error("scope ended before it was entered");
  });
  return {
    path: await Promise.race([path, ended]),
    release: async () => {
      release();
      await done;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// (a) EROFS and (b) EACCES

interface Environment {
  title: string;
  /** The subjects also read with --format json. */
  json(s: Subject): boolean;
  scope: (src: string, fn: (path: string) => Promise<void>) => Promise<void>;
  asNobody: boolean;
  /** Checks that writes really fail here, with the expected errno. */
  premise(root: string): Promise<void>;
}

const environments: Environment[] = [
  {
    title: "on a read-only bind mount of the fixtures (writes fail with EROFS), run as root",
    json: (s) => s.name === "multi" || s.name === "weird",
    scope: withReadOnlyBindMount,
    asNobody: false,
    premise: async (root) => {
      const layout = join(root, "single");
      await assert.rejects(writeFile(join(layout, "index.json.lock"), "", { flag: "wx" }), { code: "EROFS" });
      await assert.rejects(mkdir(join(layout, "ingest")), { code: "EROFS" });
      await assert.rejects(writeFile(join(layout, "index.json"), "{}", { flag: "r+" }), { code: "EROFS" });
    },
  },
  {
    title: "on a chmod -R a-w copy of the fixtures read by uid 65534 (writes fail with EACCES)",
    json: (s) => s.name === "nested",
    scope: withUnwritableCopy,
    asNobody: true,
    premise: async (root) => {
      const layout = join(root, "single");
      const probe = `
        const fs = require("node:fs"), path = require("node:path");
        const L = process.argv[1], codes = [];
        const attempt = (fn) => { try { fn(); codes.push("ok"); } catch (e) { codes.push(e.code); } };
        attempt(() => fs.openSync(path.join(L, "index.json.lock"), "wx"));
        attempt(() => fs.mkdirSync(path.join(L, "ingest")));
        attempt(() => fs.openSync(path.join(L, "index.json"), "r+"));
        process.stdout.write(JSON.stringify(codes));
      `;
      const result = await runProgram(process.execPath, ["-e", probe, layout], { asNobody: true });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout.toString("utf8")), ["EACCES", "EACCES", "EACCES"]);
    },
  },
];

for (const env of environments) {
  describe(`every read command succeeds ${env.title}, and changes nothing`, { skip: needsRoot }, () => {
    let scope: { path: string; release(): Promise<void> } | undefined;
    let initial: string[] = [];
    const root = (): string => scope!.path;

    before(async () => {
      scope = await enter(env.scope, fx.root);
      initial = await snapshotTree(root());
    });
    after(async () => {
      await scope?.release();
    });

    it("really refuses writes there", async () => {
      await env.premise(root());
      assert.deepEqual(diffSnapshots(initial, await snapshotTree(root())), []);
    });

    describe("each command exits 0, prints what fixtures.json records, and leaves the tree as it was", {
      concurrency: 3,
    }, () => {
      for (const inv of invocations(env.json)) {
        it(inv.title, async () => {
          const layout = join(root(), inv.subject.rel);
          const result = await unchanged(root(), () => runRoci(inv.args(layout), { asNobody: env.asNobody }));
          checkOutput(inv, result, layout);
          assertNoLockOrIngest(layout);
        });
      }
    });

    it("leaves no index.json.lock, no ingest/ and no new, changed or removed entry anywhere", async () => {
      for (const subject of subjects) assertNoLockOrIngest(join(root(), subject.rel));
      assert.deepEqual(diffSnapshots(initial, await snapshotTree(root())), []);
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// --read-only and ROCI_READ_ONLY=1

describe("--read-only and ROCI_READ_ONLY=1 are accepted by every read command and change nothing", {
  concurrency: 3,
}, () => {
  const multiOnly = (s: Subject): boolean => s.name === "multi";
  const ways: { title: string; run(args: string[]): Promise<RunResult> }[] = [
    { title: "--read-only", run: (args) => runRoci(["--read-only", ...args]) },
    { title: "ROCI_READ_ONLY=1", run: (args) => runRoci(args, { env: { ROCI_READ_ONLY: "1" } }) },
  ];
  for (const inv of invocations(() => false, multiOnly)) {
    for (const way of ways) {
      it(`${inv.title} with ${way.title}`, async () => {
        const layout = join(fx.root, inv.subject.rel);
        const result = await unchanged(fx.root, () => way.run(inv.args(layout)));
        checkOutput(inv, result, layout);
        assertNoLockOrIngest(layout);
      });
    }
  }

  it("also takes --read-only after the command name, with --format json", async () => {
    const inv = invocations(multiOnly, multiOnly).find((i) => i.json && i.command.label === "inspect REF")!;
    const layout = join(fx.root, inv.subject.rel);
    const [first, ...rest] = inv.args(layout).slice(2);
    const result = await unchanged(fx.root, () =>
      runRoci([first!, "--read-only", "--format", "json", ...rest]),
    );
    checkOutput(inv, result, layout);
  });
});

// ---------------------------------------------------------------------------------------------------
// strace

const tracedSyscalls = [
  "openat",
  "open",
  "creat",
  "mkdir",
  "mkdirat",
  "rename",
  "renameat",
  "renameat2",
  "unlink",
  "unlinkat",
  "link",
  "linkat",
  "symlink",
  "symlinkat",
  "chmod",
  "fchmodat",
  "utimensat",
  "truncate",
  "ftruncate",
  "flock",
];
const opens = new Set(["open", "openat", "creat"]);
const writeOpenFlags = /\b(O_WRONLY|O_RDWR|O_CREAT|O_TRUNC)\b/;
/** Syscalls that change the tree or a file in it whatever their flags. */
const changing = new Set(tracedSyscalls.filter((s) => !opens.has(s) && s !== "flock" && s !== "ftruncate"));

/** Why strace cannot be used here (not installed, or ptrace not permitted), or false. */
function straceUnavailable(): string | false {
  const probe = spawnSync("strace", ["-f", "-qq", "-e", "trace=openat", "-o", "/dev/null", "true"], {
    encoding: "utf8",
  });
  if (probe.error) return `strace is not installed (${(probe.error as NodeJS.ErrnoException).code})`;
  if (probe.status !== 0) return `strace cannot trace here: ${probe.stderr.trim()}`;
  return false;
}

interface Syscall {
  line: string;
  name: string;
  /** The quoted path arguments, resolved against the working directory. */
  paths: string[];
  /** Whether a path is relative to a directory fd (so it cannot be placed from the trace alone). */
  fdRelative: boolean;
  flags: string;
}

/** C-string unescaping, as strace prints strings. */
function unescapeC(text: string): string {
  return text.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === "x") return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(Number.parseInt(e, 8));
    return ({ n: "\n", t: "\t", r: "\r", v: "\v", f: "\f" } as Record<string, string>)[e] ?? e;
  });
}

/** The calls of an `strace -f -qq` log; a call split by another thread is read from its first half. */
function parseStrace(log: string, cwd: string): Syscall[] {
  const calls: Syscall[] = [];
  for (const line of log.split("\n")) {
    const match = /^(?:\d+\s+)?([a-z0-9_]+)\((.*)$/.exec(line);
    if (!match) continue; // "<... resumed>", "--- SIG… ---", blank
    const [, name, rest] = match as unknown as [string, string, string];
    const quoted = [...rest.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => unescapeC(m[1]!));
    const dirfd = /^([^,]+),/.exec(rest)?.[1] ?? "";
    const atStyle = name.endsWith("at") || name === "renameat2";
    calls.push({
      line,
      name,
      paths: quoted.map((p) => resolve(cwd, p)),
      fdRelative: atStyle && dirfd !== "AT_FDCWD" && !quoted.every((p) => isAbsolute(p)),
      flags: rest,
    });
  }
  return calls;
}

const under = (path: string, root: string): boolean => path === root || path.startsWith(`${root}/`);

/** The calls that could have written to anything under `root` (conservative when a call cannot be placed). */
function writesUnder(calls: Syscall[], root: string): Syscall[] {
  return calls.filter((call) => {
    if (call.name === "flock" || call.name === "ftruncate") return true; // fd only: none at all
    const touches = call.fdRelative || call.paths.length === 0 || call.paths.some((p) => under(p, root));
    if (opens.has(call.name)) return touches && (call.name === "creat" || writeOpenFlags.test(call.flags));
    return changing.has(call.name) && touches;
  });
}

describe("the strace log reader", () => {
  it("flags write opens, creations, renames, removals, chmods, touches, truncations and locks under a root", () => {
    const root = "/r/layout";
    const log = [
      `1 openat(AT_FDCWD, "/r/layout/index.json", O_RDONLY|O_CLOEXEC) = 3`,
      `1 openat(AT_FDCWD, "/elsewhere/out", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4`,
      `2 openat(AT_FDCWD, "/r/layout/index.json.lock", O_RDWR|O_CREAT|O_CLOEXEC, 0666 <unfinished ...>`,
      `2 <... openat resumed>) = -1 EROFS (Read-only file system)`,
      `3 mkdir("/r/layout/ingest", 0755) = -1 EACCES (Permission denied)`,
      `3 renameat2(AT_FDCWD, "/r/layout/x.tmp", AT_FDCWD, "/r/layout/index.json", 0) = 0`,
      `3 utimensat(5, NULL, NULL, 0) = 0`,
      `3 flock(18, LOCK_SH) = 0`,
      `3 openat(7, "index.json", O_RDONLY) = 8`,
      `3 unlinkat(7, "x", 0) = 0`,
    ].join("\n");
    const flagged = writesUnder(parseStrace(log, "/"), root).map((c) => c.name);
    assert.deepEqual(flagged, ["openat", "mkdir", "renameat2", "utimensat", "flock", "unlinkat"]);
    assert.deepEqual(parseStrace(`1 openat(AT_FDCWD, "a\\"b", O_RDONLY) = 3`, "/d")[0]?.paths, ['/d/a"b']);
  });
});

describe("under strace, no read command makes a syscall that could change the layout", {
  skip: straceUnavailable(),
  concurrency: 3,
}, () => {
  let logs = "";
  before(async () => {
    logs = await mkdtemp(join(tmpdir(), "roci-strace-"));
  });
  after(async () => {
    if (logs) await rm(logs, { recursive: true, force: true });
  });

  for (const inv of invocations((s) => s.name === "multi")) {
    it(inv.title, async () => {
      const layout = join(fx.root, inv.subject.rel);
      const args = inv.args(layout);
      const log = join(logs, `${inv.title.replace(/[^a-z0-9]+/gi, "-")}.log`);
      const result = await unchanged(fx.root, () =>
        runProgram("strace", [
          "-f",
          "-qq",
          "-e",
          `trace=${tracedSyscalls.join(",")}`,
          "-o",
          log,
          process.execPath,
          cli,
          ...args,
        ]),
      );
      checkOutput(inv, result, layout);
      const calls = parseStrace(await readFile(log, "utf8"), process.cwd());
      const read = calls.filter((c) => opens.has(c.name) && c.paths.some((p) => under(p, layout)));
      assert.ok(
        read.some((c) => c.paths.includes(join(layout, "oci-layout"))),
        `the trace shows the layout being read:\n${calls.map((c) => c.line).join("\n")}`,
      );
      const writes = writesUnder(calls, fx.root);
      assert.deepEqual(
        writes.map((c) => c.line),
        [],
        "syscalls that could write under the fixtures (no flock or ftruncate at all)",
      );
      assertNoLockOrIngest(layout);
    });
  }
});
