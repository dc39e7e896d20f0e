/**
 * Bad input, as a user meets it: every one of these produces a clear one-line message naming the path,
 * reference or digest, a stable error code, a documented non-zero exit status, and no stack trace
 * unless --debug. With --format json the error is one JSON line on stderr with the same code; a command
 * that prints a model prints nothing on stdout when it fails (no partial output that looks valid).
 *
 * The text runs spawn the built CLI (its real exit status and stderr); the JSON and --debug runs call
 * the same `main` in-process, to keep the suite fast (a few JSON runs spawn the CLI too).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import type { RociErrorCode } from "../errors.ts";
import { copyFixture, fixtures, repoRoot } from "../test-support/fixtures.ts";
import { type RunResult, runProgram, runRoci } from "../test-support/run.ts";
import { main } from "./program.ts";

const fx = await fixtures();
const { layouts } = fx;
const sha256 = (bytes: Uint8Array | string): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const blobFile = (layout: string, digest: string): string => join(layout, "blobs", ...digest.split(":"));

const INDEX = "application/vnd.oci.image.index.v1+json";
const REF_NAME = "org.opencontainers.image.ref.name";
const single = layouts.single;
const manifestDigest = single.refs.v1.digest;
const configDigest = single.image.config.digest;
const layerDigest = single.image.layers[1]!.digest;

// ---------------------------------------------------------------------------------------------------
// Damaged private copies of `single`, made once

async function addEntry(layout: string, entry: object): Promise<void> {
  const path = join(layout, "index.json");
  const index = JSON.parse(await readFile(path, "utf8")) as { manifests: object[] };
  index.manifests.push(entry);
  await writeFile(path, JSON.stringify(index));
}

async function putBlob(layout: string, bytes: string): Promise<{ digest: string; size: number }> {
  const digest = sha256(bytes);
  await writeFile(blobFile(layout, digest), bytes);
  return { digest, size: Buffer.byteLength(bytes) };
}

/** single whose v1 manifest blob has one byte changed (same size). */
const manifestCorrupt = await copyFixture("single");
{
  const path = blobFile(manifestCorrupt, manifestDigest);
  const bytes = await readFile(path);
  bytes[Math.floor(bytes.length / 2)]! ^= 0x20;
  await writeFile(path, bytes);
}

/** single whose config and second layer are cut to half their size. */
const truncated = await copyFixture("single");
for (const descriptor of [single.image.config, single.image.layers[1]!]) {
  await truncate(blobFile(truncated, descriptor.digest), Math.floor(descriptor.size / 2));
}

/**
 * A manifest cycle: an index blob stored under digest D that lists D itself, tagged "cycle". No content
 * can hash to a digest it contains, so the blob's bytes do not match D: reading it must fail cleanly.
 */
const cyclic = await copyFixture("single");
const cycleDigest = sha256("the digest an index would need to list itself");
{
  const document = (size: number): string =>
    JSON.stringify({
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: [{ mediaType: INDEX, digest: cycleDigest, size }],
    });
  let size = 0;
  while (Buffer.byteLength(document(size)) !== size) size = Buffer.byteLength(document(size));
  await writeFile(blobFile(cyclic, cycleDigest), document(size));
  await addEntry(cyclic, {
    mediaType: INDEX,
    digest: cycleDigest,
    size,
    annotations: { [REF_NAME]: "cycle" },
  });
}

/** Ten well-formed indexes, each listing the next, down to v1's manifest, tagged "deep". */
const deep = await copyFixture("single");
let deepTop: { digest: string; size: number } = single.refs.v1;
{
  let child: object = single.refs.v1;
  for (let level = 0; level < 10; level++) {
    deepTop = await putBlob(deep, JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: [child] }));
    child = { mediaType: INDEX, ...deepTop };
  }
  await addEntry(deep, { ...child, annotations: { [REF_NAME]: "deep" } });
}

const nowhere = join(tmpdir(), `roci-bad-input-nonexistent-${process.pid}`, "layout");

// ---------------------------------------------------------------------------------------------------
// The contract every failure keeps

interface BadInput {
  /** What the user did and what must happen, as a sentence. */
  title: string;
  args: string[];
  exit: number;
  code: RociErrorCode;
  /** Text the error message must contain: the path, reference or digest, and the helpful details. */
  names: string[];
  /** Whether the command prints a model or document (so stdout must stay empty when it fails). */
  model: boolean;
  /** Checks of what is printed on stdout when it is not empty (verify's report, blob's stream). */
  stdout?(out: Buffer): void;
  json?(out: Buffer): void;
  /** Text that must appear nowhere in the output. */
  absent?: string[];
  /** Run the JSON variant as a separate process too (default: in-process). */
  spawnJson?: boolean;
}

/** One error line, `roci: error [CODE]: message`, and at most one `  hint:` line; no stack. */
function errorLine(stderr: string, code: string): string {
  const lines = stderr.split("\n");
  assert.equal(lines.pop(), "", `stderr ends with a newline: ${JSON.stringify(stderr)}`);
  assert.ok(lines.length >= 1 && lines.length <= 2, `one error line and at most one hint:\n${stderr}`);
  const match = /^roci: error \[([A-Z_]+)\]: (\S.*)$/.exec(lines[0]!);
  assert.ok(match, `the error line has the form "roci: error [CODE]: message":\n${stderr}`);
  assert.equal(match[1], code, stderr);
  if (lines.length === 2) assert.match(lines[1]!, /^ {2}hint: \S/, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  return match[2]!;
}

function assertNames(message: string, names: readonly string[]): void {
  for (const name of names) assert.ok(message.includes(name), `the message names ${name}:\n${message}`);
}

function assertAbsent(result: RunResult, absent: readonly string[] = []): void {
  for (const text of absent) {
    assert.ok(!result.stderr.includes(text), `stderr does not contain ${text}`);
    assert.ok(!result.stdout.toString("latin1").includes(text), `stdout does not contain ${text}`);
  }
}

function checkText(c: BadInput, result: RunResult): void {
  const context = `roci ${c.args.join(" ")}\nstderr: ${result.stderr}`;
  assert.equal(result.code, c.exit, context);
  assertNames(errorLine(result.stderr, c.code), c.names);
  if (c.model) assert.equal(result.stdout.length, 0, `nothing on stdout: ${context}`);
  c.stdout?.(result.stdout);
  assertAbsent(result, c.absent);
}

function checkJson(c: BadInput, result: RunResult): void {
  const context = `roci --format json ${c.args.join(" ")}\nstderr: ${result.stderr}`;
  assert.equal(result.code, c.exit, context);
  assert.match(result.stderr, /^[^\n]*\n$/, `one line on stderr: ${context}`);
  const { error } = JSON.parse(result.stderr) as {
    error: { code: string; message: string; hint?: string; subject?: string };
  };
  assert.equal(error.code, c.code, context);
  assertNames(error.message, c.names);
  assert.doesNotMatch(error.message, /\n/);
  if (c.model) assert.equal(result.stdout.length, 0, `nothing on stdout: ${context}`);
  c.json?.(result.stdout);
  assertAbsent(result, c.absent);
}

/** Runs the CLI's `main` in this process, collecting what it prints. */
async function runMain(args: string[]): Promise<RunResult> {
  const sink = (chunks: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(Buffer.from(chunk));
        done();
      },
    });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const code = await main(args, {
    stdout: sink(out) as typeof process.stdout,
    stderr: sink(err) as typeof process.stderr,
  });
  return { code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8") };
}

function checkDebug(c: BadInput, result: RunResult): void {
  assert.equal(result.code, c.exit, result.stderr);
  const [first] = result.stderr.split("\n");
  assert.match(first ?? "", new RegExp(`^roci: error \\[${c.code}\\]: `), result.stderr);
  assert.match(result.stderr, /\n {4}at /, `--debug shows a stack trace:\n${result.stderr}`);
}

function specify(cases: BadInput[]): void {
  for (const c of cases) {
    it(c.title, async () => {
      const [text, json, debug] = await Promise.all([
        runRoci(c.args),
        c.spawnJson ? runRoci(["--format", "json", ...c.args]) : runMain(["--format", "json", ...c.args]),
        runMain(["--debug", ...c.args]),
      ]);
      checkText(c, text);
      checkJson(c, json);
      checkDebug(c, debug);
    });
  }
}

/** `verify` prints its report before failing: the report must name the damaged blob and what is wrong. */
function reportNames(digest: string, kind: string, code: string) {
  return {
    stdout(out: Buffer): void {
      const row = out
        .toString("utf8")
        .split("\n")
        .find((line) => line.includes(digest));
      assert.ok(row, `the report names ${digest}:\n${out}`);
      assert.match(row, new RegExp(`^ERROR\\s+${kind}\\s`));
      assert.match(out.toString("utf8"), /^FAILED: /m);
    },
    json(out: Buffer): void {
      const report = JSON.parse(out.toString("utf8")) as {
        ok: boolean;
        problems: { subject: string; kind: string; code: string; severity: string }[];
      };
      assert.equal(report.ok, false);
      const problem = report.problems.find((p) => p.subject === digest);
      assert.ok(problem, `the report lists ${digest}`);
      assert.deepEqual([problem.kind, problem.code, problem.severity], [kind, code, "error"]);
    },
  };
}

/** `blob` streams while verifying, so bytes may have been written before the mismatch shows: never the right ones. */
const neverTheRightBytes = (digest: string) => ({
  stdout: (out: Buffer) => assert.notEqual(sha256(out), digest),
  json: (out: Buffer) => assert.notEqual(sha256(out), digest),
});

// ---------------------------------------------------------------------------------------------------

describe("a layout that is not a valid layout", { concurrency: 4 }, () => {
  const broken: {
    name: keyof typeof layouts;
    what: string;
    code: RociErrorCode;
    names: (path: string) => string[];
  }[] = [
    {
      name: "no-oci-layout",
      what: "with no oci-layout file",
      code: "INVALID_LAYOUT",
      names: (p) => [p, "oci-layout"],
    },
    {
      name: "bad-version",
      what: 'whose oci-layout says imageLayoutVersion "9.9.9"',
      code: "INVALID_LAYOUT",
      names: (p) => [p, "9.9.9"],
    },
    {
      name: "index-bad-json",
      what: "whose index.json is not JSON (a torn write)",
      code: "INVALID_DOCUMENT",
      names: (p) => [join(p, "index.json"), "JSON"],
    },
    {
      name: "index-too-large",
      what: "whose index.json is larger than 4 MiB",
      code: "DOCUMENT_TOO_LARGE",
      names: (p) => [join(p, "index.json"), "4194304"],
    },
    {
      name: "index-not-index",
      what: "whose index.json holds an image manifest, not an index",
      code: "INVALID_DOCUMENT",
      names: (p) => [join(p, "index.json"), "image index"],
    },
    {
      name: "is-a-file",
      what: "that is a regular file where a directory was expected",
      code: "INVALID_LAYOUT",
      names: (p) => [p, "file"],
    },
  ];
  specify(
    broken.flatMap(({ name, what, code, names }) => {
      const path = layouts[name].path;
      return [
        { args: ["ls", path], command: "ls LAYOUT" },
        { args: ["inspect", `${path}:v1`], command: "inspect REF" },
      ].map(({ args, command }) => ({
        title: `${command} of a layout ${what}: exit 5, ${code}, names the path`,
        spawnJson: command === "ls LAYOUT" && name === "index-bad-json",
        args,
        exit: 5,
        code,
        names: names(path),
        model: true,
      }));
    }),
  );
});

describe("a path that does not exist", { concurrency: 4 }, () => {
  specify([
    {
      title: "ls LAYOUT of a nonexistent directory: exit 3, NOT_FOUND, names the path",
      args: ["ls", nowhere],
      exit: 3,
      code: "NOT_FOUND",
      names: [nowhere],
      model: true,
    },
    {
      title: "inspect REF in a nonexistent directory: exit 3, NOT_FOUND, names the path",
      args: ["inspect", `${nowhere}:v1`],
      exit: 3,
      code: "NOT_FOUND",
      names: [nowhere],
      model: true,
    },
  ]);
});

describe("content that does not match its digest or size", { concurrency: 4 }, () => {
  const corrupt = layouts["corrupt-blob"];
  const bad = corrupt.corrupt.digest;
  specify([
    {
      title: "verify LAYOUT with a corrupt layer: exit 5, and the report names the layer as corrupt",
      spawnJson: true,
      args: ["verify", corrupt.path],
      exit: 5,
      code: "VERIFY_FAILED",
      names: [corrupt.path],
      model: false,
      ...reportNames(bad, "corrupt", "DIGEST_MISMATCH"),
    },
    {
      title: "verify REF with a corrupt layer: exit 5, and the report names the layer as corrupt",
      args: ["verify", `${corrupt.path}:v1`],
      exit: 5,
      code: "VERIFY_FAILED",
      names: [corrupt.path],
      model: false,
      ...reportNames(bad, "corrupt", "DIGEST_MISMATCH"),
    },
    {
      title: "blob LAYOUT DIGEST of a corrupt blob: exit 5, DIGEST_MISMATCH, names the digest and the layout",
      spawnJson: true,
      args: ["blob", corrupt.path, bad],
      exit: 5,
      code: "DIGEST_MISMATCH",
      names: [bad, corrupt.path],
      model: false,
      ...neverTheRightBytes(bad),
    },
    ...["inspect", "manifest", "config"].map((command) => ({
      title: `${command} REF whose manifest blob is corrupt: exit 5, DIGEST_MISMATCH, names the manifest`,
      args: [command, `${manifestCorrupt}:v1`],
      exit: 5,
      code: "DIGEST_MISMATCH" as const,
      names: [manifestDigest, manifestCorrupt],
      model: true,
    })),
    ...["inspect", "config"].map((command) => ({
      title: `${command} REF whose config blob is truncated: exit 5, SIZE_MISMATCH, names the config and both sizes`,
      args: [command, `${truncated}:v1`],
      exit: 5,
      code: "SIZE_MISMATCH" as const,
      names: [
        configDigest,
        truncated,
        String(single.image.config.size),
        String(Math.floor(single.image.config.size / 2)),
      ],
      model: true,
    })),
    {
      title: "verify LAYOUT with a truncated config and layer: exit 5, and the report names both",
      args: ["verify", truncated],
      exit: 5,
      code: "VERIFY_FAILED",
      names: [truncated],
      model: false,
      stdout: (out) => {
        reportNames(configDigest, "corrupt", "SIZE_MISMATCH").stdout(out);
        reportNames(layerDigest, "corrupt", "SIZE_MISMATCH").stdout(out);
      },
      json: (out) => {
        reportNames(configDigest, "corrupt", "SIZE_MISMATCH").json(out);
        reportNames(layerDigest, "corrupt", "SIZE_MISMATCH").json(out);
      },
    },
    {
      title: "blob LAYOUT DIGEST of a truncated blob: exit 5, DIGEST_MISMATCH, names the digest",
      args: ["blob", truncated, layerDigest],
      exit: 5,
      code: "DIGEST_MISMATCH",
      names: [layerDigest, truncated],
      model: false,
      ...neverTheRightBytes(layerDigest),
    },
  ]);
});

describe("a blob that is missing", { concurrency: 4 }, () => {
  const missing = layouts["missing-blob"];
  const gone = missing.missing.digest;
  specify([
    {
      title: "verify LAYOUT: exit 5, and the report names the blob as missing",
      args: ["verify", missing.path],
      exit: 5,
      code: "VERIFY_FAILED",
      names: [missing.path],
      model: false,
      ...reportNames(gone, "missing", "BLOB_MISSING"),
    },
    {
      title: "blob LAYOUT DIGEST: exit 3, BLOB_MISSING, names the digest and the layout, prints nothing",
      spawnJson: true,
      args: ["blob", missing.path, gone],
      exit: 3,
      code: "BLOB_MISSING",
      names: [gone, missing.path],
      model: true,
    },
  ]);
});

describe("a manifest cycle", { concurrency: 4 }, () => {
  specify([
    {
      title:
        "inspect REF of an index that lists itself: exit 5, DIGEST_MISMATCH naming the blob (it cannot hash right)",
      args: ["inspect", `${cyclic}:cycle`],
      exit: 5,
      code: "DIGEST_MISMATCH",
      names: [cycleDigest, cyclic],
      model: true,
    },
    {
      title: "digest LAYOUT@DIGEST of an index that lists itself: exit 5, DIGEST_MISMATCH naming the blob",
      args: ["digest", `${cyclic}@${cycleDigest}`],
      exit: 5,
      code: "DIGEST_MISMATCH",
      names: [cycleDigest],
      model: true,
    },
    {
      title: "verify REF of an index that lists itself: exit 5, and the report names the blob as corrupt",
      args: ["verify", `${cyclic}:cycle`],
      exit: 5,
      code: "VERIFY_FAILED",
      names: [cyclic],
      model: false,
      ...reportNames(cycleDigest, "corrupt", "DIGEST_MISMATCH"),
    },
    {
      title: "inspect REF of indexes nested ten deep: exit 5, MANIFEST_CYCLE, names the outer index",
      args: ["inspect", `${deep}:deep`],
      exit: 5,
      code: "MANIFEST_CYCLE",
      names: [deepTop.digest, "8"],
      model: true,
    },
  ]);
});

describe("an invalid digest", { concurrency: 4 }, () => {
  const path = single.path;
  const short = `sha256:${"a".repeat(63)}`;
  const upper = `sha256:${"A".repeat(64)}`;
  const escaping = "sha256:../../etc/passwd";
  specify([
    {
      title: `blob LAYOUT ${escaping}: exit 2, INVALID_DIGEST, names the digest, reads nothing outside the layout`,
      args: ["blob", path, escaping],
      exit: 2,
      code: "INVALID_DIGEST",
      names: [escaping],
      model: true,
      absent: ["root:"],
    },
    ...[short, upper].map((digest) => ({
      title: `blob LAYOUT ${digest.slice(0, 16)}… (not 64 lower-case hex): exit 2, INVALID_DIGEST, names it`,
      args: ["blob", path, digest],
      exit: 2,
      code: "INVALID_DIGEST" as const,
      names: [digest],
      model: true,
    })),
    ...[short, upper].map((digest) => ({
      title: `digest LAYOUT@${digest.slice(0, 16)}… (not 64 lower-case hex): exit 2, INVALID_REFERENCE, names the reference`,
      args: ["digest", `${path}@${digest}`],
      exit: 2,
      code: "INVALID_REFERENCE" as const,
      names: [`${path}@${digest}`],
      model: true,
    })),
    {
      // DESIGN.md: the text after the last @ is a digest only if it is a valid one; this is not even
      // digest-shaped ("." and "/" are outside the grammar), so it stays part of the path.
      title: `digest LAYOUT@${escaping}: the @ stays in the path, so exit 3, NOT_FOUND naming the whole path; nothing outside is read`,
      args: ["digest", `${path}@${escaping}`],
      exit: 3,
      code: "NOT_FOUND",
      names: [`${path}@${escaping}`],
      model: true,
      absent: ["root:"],
    },
  ]);

  const strace = spawnSync("strace", ["-V"]).status === 0 ? false : "strace is not installed";
  it("never opens or stats /etc/passwd for those escape attempts (strace)", { skip: strace }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "roci-bad-input-strace-"));
    try {
      for (const [i, args] of [
        ["blob", path, escaping],
        ["digest", `${path}@${escaping}`],
        ["blob", path, "sha256:/etc/passwd"],
        ["inspect", `oci-layout://${path}@${escaping}`],
      ].entries()) {
        const log = join(dir, `${i}.log`);
        const traced = await runProgram("strace", [
          ...["-f", "-qq", "-s", "4096", "-e", "trace=%file", "-o", log],
          ...[process.execPath, join(repoRoot, "dist", "cli", "main.js"), ...args],
        ]);
        assert.notEqual(traced.code, 0, traced.stderr);
        const calls = completeCalls(await readFile(log, "utf8")).filter((c) => !c.startsWith("execve("));
        assert.ok(calls.length > 0, "the trace is not empty");
        for (const call of calls.filter((c) => c.includes("passwd"))) {
          assert.match(call, /\) = -1 E[A-Z]+ /, `only failed lookups of the literal argument: ${call}`);
          assert.doesNotMatch(call, /"\/etc\/passwd"/, call);
        }
        assertAbsent(traced, ["root:"]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The calls of an `strace -f -o` log, each on one line: a call another thread interrupted is joined back up. */
function completeCalls(log: string): string[] {
  const pending = new Map<string, string>();
  const calls: string[] = [];
  for (const line of log.split("\n")) {
    const match = /^(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const [, pid, rest] = match as unknown as [string, string, string];
    if (rest.endsWith(" <unfinished ...>")) {
      pending.set(pid, rest.slice(0, -" <unfinished ...>".length));
      continue;
    }
    const resumed = /^<\.\.\. \S+ resumed>(.*)$/.exec(rest);
    if (resumed) {
      calls.push((pending.get(pid) ?? "") + resumed[1]);
      pending.delete(pid);
    } else if (/^[a-z0-9_]+\(/.test(rest)) {
      calls.push(rest);
    }
  }
  return [...calls, ...pending.values()];
}

describe("a tag or platform that is not there", { concurrency: 4 }, () => {
  const tagged = layouts.tagged;
  const names = layouts.names;
  const multi = layouts.multi;
  specify([
    {
      title: "inspect LAYOUT:TAG with an unknown tag: exit 3, TAG_NOT_FOUND, lists the available tags",
      spawnJson: true,
      args: ["inspect", `${tagged.path}:nosuch`],
      exit: 3,
      code: "TAG_NOT_FOUND",
      names: [tagged.path, '"nosuch"', ...Object.keys(tagged.refs)],
      model: true,
    },
    {
      title: "digest LAYOUT:TAG with an unknown tag: exit 3, TAG_NOT_FOUND, lists the available tags",
      args: ["digest", `${single.path}:nosuch`],
      exit: 3,
      code: "TAG_NOT_FOUND",
      names: [single.path, '"nosuch"', "v1"],
      model: true,
    },
    ...["digest", "inspect"].map((command) => ({
      title: `${command} LAYOUT:TAG with a tag on two images: exit 1, AMBIGUOUS_TAG, lists both digests`,
      args: [command, `${names.path}:${names.ambiguous.tag}`],
      exit: 1,
      code: "AMBIGUOUS_TAG" as const,
      names: [names.path, `"${names.ambiguous.tag}"`, ...names.ambiguous.digests],
      model: true,
    })),
    ...["inspect", "config", "manifest"].map((command) => ({
      title: `${command} --platform linux/s390x of an index without it: exit 3, PLATFORM_NOT_FOUND, lists the platforms`,
      args: [command, "--platform", "linux/s390x", `${multi.path}:multi`],
      exit: 3,
      code: "PLATFORM_NOT_FOUND" as const,
      names: ["linux/s390x", "linux/amd64", "linux/arm64/v8", multi.index.digest],
      model: true,
    })),
    ...["linux/", "linux", "a/b/c/d"].map((platform) => ({
      title: `inspect --platform ${platform} (not os/arch[/variant]): exit 2, USAGE, names the platform`,
      args: ["inspect", "--platform", platform, `${multi.path}:multi`],
      exit: 2,
      code: "USAGE" as const,
      names: [`"${platform}"`],
      model: true,
    })),
  ]);
});

describe("an unknown command, flag or argument", { concurrency: 4 }, () => {
  const path = single.path;
  const usage: { title: string; args: string[]; names: string[] }[] = [
    { title: "an unknown command", args: ["frob", path], names: ["frob"] },
    { title: "an unknown flag", args: ["ls", "--frob", path], names: ["--frob"] },
    { title: "a missing argument", args: ["ls"], names: ["layout"] },
    { title: "an invalid --format", args: ["--format", "yaml", "ls", path], names: ["yaml"] },
  ];
  for (const u of usage) {
    it(`${u.title} (roci ${u.args.join(" ")}): exit 2, names it, no stack, nothing on stdout`, async () => {
      const [text, json] = await Promise.all([runRoci(u.args), runRoci(["--format", "json", ...u.args])]);
      for (const result of [text, json]) {
        assert.equal(result.code, 2, result.stderr);
        assertNames(result.stderr, u.names);
        assert.doesNotMatch(result.stderr, /^\s+at /m);
        assert.equal(result.stdout.length, 0);
      }
    });
  }

  it("reports them like every other error: `roci: error [USAGE]: …`, at most one hint line", async () => {
    for (const u of usage) {
      const result = await runRoci(u.args);
      assertNames(errorLine(result.stderr, "USAGE"), u.names);
    }
  });
  it("reports them as one JSON line with code USAGE under --format json", async () => {
    for (const u of usage.filter((x) => x.args[0] !== "--format")) {
      const result = await runRoci(["--format", "json", ...u.args]);
      const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string } };
      assert.equal(error.code, "USAGE");
      assertNames(error.message, u.names);
    }
  });
});
