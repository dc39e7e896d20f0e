/**
 * Bad archives through the CLI: truncated tars, an index.json naming entries that are not there, `..`
 * in names, links leaving the archive, a docker save archive whose layers do not match its diff_ids,
 * a manifest.json that is not an array, and docker-archive selectors naming nothing. Each gives a
 * one-line error naming the archive and the entry, with the documented exit status (5 for a damaged
 * or unsafe archive; 3 for an image or blob that is not there, as for layouts, where `verify` says 5),
 * and nothing is written: the directory holding the archives is unchanged and TMPDIR is left empty.
 *
 * The archives are made by hand (test-support/archives.ts `handTar`), from the single fixture.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { type HandEntry, handTar, layoutFiles, put, scratch, sha256 } from "../test-support/archives.ts";
import { fixtures } from "../test-support/fixtures.ts";
import { diffSnapshots, snapshotTree } from "../test-support/readonly.ts";
import { type RunResult, runRoci } from "../test-support/run.ts";

const fx = await fixtures();
const { single } = fx.layouts;
const hex = (digest: string): string => digest.slice("sha256:".length);
const blobName = (digest: string): string => `blobs/sha256/${hex(digest)}`;

const manifestDigest = single.refs.v1.digest;
const configDigest = single.image.config.digest;
const layer0 = single.image.layers[0]!;
const layer1 = single.image.layers[1]!;

// ---------------------------------------------------------------------------------------------------
// The archives

/** The single fixture as a tar of its layout, optionally with entries changed, dropped or added. */
async function ociEntries(
  change: (entry: HandEntry) => HandEntry | HandEntry[] | undefined = (entry) => entry,
): Promise<HandEntry[]> {
  const names = [
    "oci-layout",
    "index.json",
    ...[manifestDigest, configDigest, layer0.digest, layer1.digest].map(blobName),
  ];
  return (await layoutFiles(single.path, names)).flatMap((entry) => change(entry) ?? []);
}

/** The single fixture as skopeo's docker-archive shape: `<diffid>.tar`, `<config>.json`, manifest.json. */
async function dockerEntries(
  manifestJson: (entry: { Config: string; RepoTags: string[]; Layers: string[] }) => unknown = (e) => [e],
): Promise<HandEntry[]> {
  const read = (digest: string) => readFile(join(single.path, "blobs", "sha256", hex(digest)));
  const layers = await Promise.all(single.image.layers.map(async (l) => gunzipSync(await read(l.digest))));
  const entry = {
    Config: `${hex(configDigest)}.json`,
    RepoTags: ["lab/a:1"],
    Layers: single.diffIds.map((diffId) => `${hex(diffId)}.tar`),
  };
  return [
    ...layers.map((data, i) => ({ name: `${hex(single.diffIds[i]!)}.tar`, data, mode: 0o444 })),
    { name: `${hex(configDigest)}.json`, data: await read(configDigest), mode: 0o444 },
    { name: "manifest.json", data: JSON.stringify(manifestJson(entry)), mode: 0o444 },
  ];
}

const dir = await scratch("roci-bad-archives-");
/** Only the bad archives: snapshotted around every run. */
const bad = join(dir, "bad");
await mkdir(bad);
await chmod(bad, 0o755);

const good = handTar(await ociEntries());
/** Offsets of an entry's header and body in a tar made by `handTar` (no PAX or long names). */
function offsetsOf(tar: Buffer, name: string): { header: number; data: number } {
  for (let header = 0; header + 512 <= tar.length; header += 512) {
    if (tar.subarray(header, header + name.length + 1).equals(Buffer.from(`${name}\0`))) {
      return { header, data: header + 512 };
    }
  }
  throw new Error(`${name} is not in the tar`);
}
const configAt = offsetsOf(good, blobName(configDigest));

const archives = {
  /** Cut 100 bytes into the config blob's body. */
  truncatedBody: await put(bad, "truncated-body.tar", good.subarray(0, configAt.data + 100)),
  /** Cut 100 bytes into the config blob's header. */
  truncatedHeader: await put(bad, "truncated-header.tar", good.subarray(0, configAt.header + 100)),
  truncatedGzip: await put(bad, "truncated.tar.gz", gzipSync(good).subarray(0, 600)),
  truncatedDocker: await put(bad, "truncated-docker.tar", handTar(await dockerEntries()).subarray(0, 5000)),
  missingManifest: await put(
    bad,
    "missing-manifest.tar",
    handTar(await ociEntries((e) => (e.name === blobName(manifestDigest) ? undefined : e))),
  ),
  missingLayer: await put(
    bad,
    "missing-layer.tar",
    handTar(await ociEntries((e) => (e.name === blobName(layer0.digest) ? undefined : e))),
  ),
  noIndex: await put(
    bad,
    "no-index.tar",
    handTar(await ociEntries((e) => (e.name === "index.json" ? undefined : e))),
  ),
  /** The layer only under a name with `..` (which extraction would put elsewhere). */
  dotDotBlob: await put(
    bad,
    "dotdot-blob.tar",
    handTar(
      await ociEntries((e) =>
        e.name === blobName(layer0.digest)
          ? { ...e, name: `blobs/sha256/../sha256/${hex(layer0.digest)}` }
          : e,
      ),
    ),
  ),
  /** A readable image plus stray entries that would land outside the directory if extracted. */
  dotDotExtra: await put(
    bad,
    "dotdot-extra.tar",
    handTar([
      ...(await ociEntries()),
      { name: "../evil", data: "outside" },
      { name: "blobs/../../evil2", data: "outside" },
      { name: "/tmp/evil3", data: "absolute" },
    ]),
  ),
  symlinkOut: await put(
    bad,
    "symlink-out.tar",
    handTar(
      await ociEntries((e) =>
        e.name === blobName(layer0.digest)
          ? { name: e.name, typeflag: "2", linkname: "../../../outside.tar" }
          : e,
      ),
    ),
  ),
  symlinkAbsolute: await put(
    bad,
    "symlink-absolute.tar",
    handTar(
      await ociEntries((e) =>
        e.name === blobName(layer0.digest) ? { name: e.name, typeflag: "2", linkname: "/etc/passwd" } : e,
      ),
    ),
  ),
  hardlinkOut: await put(
    bad,
    "hardlink-out.tar",
    handTar(
      await ociEntries((e) =>
        e.name === blobName(layer0.digest) ? { name: e.name, typeflag: "1", linkname: "../outside.tar" } : e,
      ),
    ),
  ),
  dockerDotDotLayer: await put(
    bad,
    "docker-dotdot-layer.tar",
    handTar(await dockerEntries((e) => [{ ...e, Layers: [e.Layers[0], "../../etc/passwd"] }])),
  ),
  dockerDotDotConfig: await put(
    bad,
    "docker-dotdot-config.tar",
    handTar(await dockerEntries((e) => [{ ...e, Config: `x/../../${e.Config}` }])),
  ),
  /** skopeo's `<v1id>/layer.tar` symlinks, one of them leaving the archive. */
  dockerSymlinkOut: await put(
    bad,
    "docker-symlink-out.tar",
    handTar([
      ...(await dockerEntries((e) => [{ ...e, Layers: ["v1a/layer.tar", "v1b/layer.tar"] }])),
      { name: "v1a/layer.tar", typeflag: "2", linkname: `../${hex(single.diffIds[0]!)}.tar` },
      { name: "v1b/layer.tar", typeflag: "2", linkname: "../../outside.tar" },
    ]),
  ),
  dockerFewerLayers: await put(
    bad,
    "docker-fewer-layers.tar",
    handTar(await dockerEntries((e) => [{ ...e, Layers: e.Layers.slice(0, 1) }])),
  ),
  dockerNotArray: await put(bad, "docker-not-array.tar", handTar(await dockerEntries((e) => e))),
  dockerTwo: await put(
    bad,
    "docker-two.tar",
    handTar(await dockerEntries((e) => [e, { ...e, RepoTags: ["lab/b:2", "example.com/c:3"] }])),
  ),
};

// ---------------------------------------------------------------------------------------------------
// Running a bad case

interface Case {
  title: string;
  args: string[];
  exit: number;
  code: string;
  /** Texts the error must contain (the archive's name is always checked). */
  names: string[];
  /** Texts stdout must contain (verify's report). */
  reported?: string[];
  archive: string;
  /** Extra checks of the result. */
  check?(result: RunResult): void;
}

/** Runs the case with its own TMPDIR; checks the error and that nothing was written anywhere near. */
async function runCase(c: Case): Promise<void> {
  const tmp = await scratch("roci-bad-tmp-");
  const before = await snapshotTree(bad);
  const result = await runRoci(c.args, { env: { TMPDIR: tmp } });
  const context = `roci ${c.args.join(" ")}\nexit ${result.code}\nstderr: ${result.stderr}`;
  assert.equal(result.code, c.exit, context);
  const first = result.stderr.split("\n")[0] ?? "";
  if (c.args.includes("--format")) {
    const { error } = JSON.parse(first) as { error: { code: string; message: string } };
    assert.equal(error.code, c.code, context);
    assert.ok(error.message.includes(basename(c.archive)), `names the archive: ${context}`);
  } else {
    assert.match(first, new RegExp(`^roci: error \\[${c.code}\\]: `), context);
    assert.ok(first.includes(basename(c.archive)), `names the archive: ${context}`);
  }
  for (const name of c.names) assert.ok(result.stderr.includes(name), `names ${name}: ${context}`);
  const stdout = result.stdout.toString("utf8");
  for (const name of c.reported ?? [])
    assert.ok(stdout.includes(name), `reports ${name}: ${context}\n${stdout}`);
  assert.doesNotMatch(result.stderr, /\n\s+at /, `no stack trace: ${context}`);
  c.check?.(result);
  assert.deepEqual(diffSnapshots(before, await snapshotTree(bad)), [], `nothing written: ${context}`);
  assert.deepEqual(await readdir(tmp), [], `TMPDIR left empty: ${context}`);
}

function cases(list: Case[]): void {
  for (const c of list) it(c.title, () => runCase(c));
}

const out = (name: string): string => join(dir, "outputs", name);
await mkdir(join(dir, "outputs"));

// ---------------------------------------------------------------------------------------------------

describe("a truncated archive: exit 5, CORRUPT_ARCHIVE naming the archive and where", {
  concurrency: 4,
}, () => {
  const body = archives.truncatedBody;
  cases([
    {
      title: "cut inside a blob's body: ls names the entry",
      args: ["ls", `oci-archive:${body}`],
      archive: body,
      exit: 5,
      code: "CORRUPT_ARCHIVE",
      names: ["truncated", blobName(configDigest)],
    },
    {
      title: "cut inside a blob's body: digest and verify fail the same way",
      args: ["verify", body],
      archive: body,
      exit: 5,
      code: "CORRUPT_ARCHIVE",
      names: ["truncated", blobName(configDigest)],
    },
    {
      title: "cut inside a header: names the header's offset",
      args: ["digest", `oci-archive:${archives.truncatedHeader}:v1`],
      archive: archives.truncatedHeader,
      exit: 5,
      code: "CORRUPT_ARCHIVE",
      names: ["truncated", `header at byte ${configAt.header}`],
    },
    {
      title: "a cut gzip stream: not valid gzip, and the partial temp file is removed",
      args: ["digest", `oci-archive:${archives.truncatedGzip}:v1`],
      archive: archives.truncatedGzip,
      exit: 5,
      code: "CORRUPT_ARCHIVE",
      names: ["gzip"],
    },
    {
      title: "a cut docker-archive",
      args: ["ls", `docker-archive:${archives.truncatedDocker}`],
      archive: archives.truncatedDocker,
      exit: 5,
      code: "CORRUPT_ARCHIVE",
      names: ["truncated"],
    },
  ]);
});

describe("index.json names entries that are not in the archive", { concurrency: 4 }, () => {
  cases([
    {
      title: "the manifest is missing: inspect exits 3, BLOB_MISSING naming the digest",
      args: ["inspect", `oci-archive:${archives.missingManifest}:v1`],
      archive: archives.missingManifest,
      exit: 3,
      code: "BLOB_MISSING",
      names: [manifestDigest],
    },
    {
      title: "the manifest is missing: verify exits 5 and its report names the blob",
      args: ["--format", "json", "verify", `oci-archive:${archives.missingManifest}`],
      archive: archives.missingManifest,
      exit: 5,
      code: "VERIFY_FAILED",
      names: [],
      check: (r) => {
        const report = JSON.parse(r.stdout.toString("utf8")) as {
          ok: boolean;
          problems: { code: string; subject: string; severity: string }[];
        };
        assert.equal(report.ok, false);
        assert.deepEqual(
          report.problems.filter((p) => p.severity === "error").map((p) => [p.code, p.subject]),
          [["BLOB_MISSING", manifestDigest]],
        );
        // What the missing manifest referenced is left over: warnings, not errors.
        assert.deepEqual(
          report.problems
            .filter((p) => p.severity === "warning")
            .map((p) => p.subject)
            .sort(),
          [configDigest, layer0.digest, layer1.digest].sort(),
        );
      },
    },
    {
      title: "a layer is missing: verify (text) exits 5 and its report names it",
      args: ["verify", `oci-archive:${archives.missingLayer}:v1`],
      archive: archives.missingLayer,
      exit: 5,
      code: "VERIFY_FAILED",
      names: [],
      reported: [`ERROR  missing  blob ${layer0.digest}`, basename(archives.missingLayer)],
    },
    {
      title: "a layer is missing: unpack exits 3 naming the layer (and unpacks nothing usable)",
      args: ["unpack", `oci-archive:${archives.missingLayer}:v1`, out("unpack-missing")],
      archive: archives.missingLayer,
      exit: 3,
      code: "BLOB_MISSING",
      names: [layer0.digest],
    },
    {
      title: "a layer is missing: export -o FILE exits 3 and writes no FILE",
      args: ["export", "-o", out("export.tar"), `oci-archive:${archives.missingLayer}:v1`],
      archive: archives.missingLayer,
      exit: 3,
      code: "BLOB_MISSING",
      names: [layer0.digest],
    },
    {
      title: "a layer is missing: copy into an archive exits 3 and writes no archive (-j 1)",
      args: [
        "copy",
        "-j",
        "1",
        `oci-archive:${archives.missingLayer}:v1`,
        `oci-archive:${out("copy.tar")}:v1`,
      ],
      archive: archives.missingLayer,
      exit: 3,
      code: "BLOB_MISSING",
      names: [layer0.digest],
    },
    {
      title: "no index.json at all: exit 5, INVALID_LAYOUT",
      args: ["ls", `oci-archive:${archives.noIndex}`],
      archive: archives.noIndex,
      exit: 5,
      code: "INVALID_LAYOUT",
      names: ["index.json"],
    },
  ]);

  it("a layer is missing: export to stdout exits 3 and prints no tar", () =>
    runCase({
      title: "",
      args: ["export", `oci-archive:${archives.missingLayer}:v1`],
      archive: archives.missingLayer,
      exit: 3,
      code: "BLOB_MISSING",
      names: [layer0.digest],
      check: (r) => assert.equal(r.stdout.length, 0, "bytes on stdout"),
    }));

  it("a layer is missing: verify's report calls the archive an archive", async () => {
    const result = await runRoci(["verify", `oci-archive:${archives.missingLayer}:v1`]);
    assert.equal(result.code, 5);
    assert.match(result.stdout.toString("utf8"), /missing from archive /);
  });
});

// A suite of its own: the cases above run concurrently, and this looks at what they all left.
describe("after those failed writes", () => {
  it("the failed copy, export and unpack left no output behind", async () => {
    const outputs = await readdir(join(dir, "outputs"));
    assert.ok(!outputs.includes("copy.tar"), outputs.join(", "));
    assert.ok(!outputs.includes("export.tar"), outputs.join(", "));
    assert.deepEqual(
      outputs.filter((name) => name.includes(".roci-") || name.endsWith(".partial")),
      [],
    );
  });
});

describe("entry names with `..` and absolute names", { concurrency: 4 }, () => {
  cases([
    {
      title: "docker-archive: a layer named ../../etc/passwd is refused, exit 5 UNSAFE_PATH",
      args: ["inspect", `docker-archive:${archives.dockerDotDotLayer}`],
      archive: archives.dockerDotDotLayer,
      exit: 5,
      code: "UNSAFE_PATH",
      names: ["../../etc/passwd"],
    },
    {
      title: "docker-archive: a config named x/../../….json is refused by config, exit 5",
      args: ["config", `docker-archive:${archives.dockerDotDotConfig}`],
      archive: archives.dockerDotDotConfig,
      exit: 5,
      code: "UNSAFE_PATH",
      names: [`x/../../${hex(configDigest)}.json`],
    },
    {
      title: "oci-archive: a blob stored only under blobs/sha256/../sha256/… is not found (exit 3)",
      args: ["blob", `oci-archive:${archives.dotDotBlob}`, layer0.digest],
      archive: archives.dotDotBlob,
      exit: 3,
      code: "BLOB_MISSING",
      names: [layer0.digest],
    },
  ]);

  it("oci-archive: stray ../evil, blobs/../../evil2 and /tmp/evil3 entries are never extracted anywhere", async () => {
    const tmp = await scratch("roci-bad-tmp-");
    const rootfs = join(tmp, "deep", "rootfs");
    const before = await snapshotTree(bad);
    const unpacked = await runRoci(["unpack", `oci-archive:${archives.dotDotExtra}:v1`, rootfs], {
      env: { TMPDIR: tmp },
    });
    assert.equal(unpacked.code, 0, unpacked.stderr);
    const verified = await runRoci(["verify", `oci-archive:${archives.dotDotExtra}`]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.deepEqual(diffSnapshots(before, await snapshotTree(bad)), []);
    assert.deepEqual((await readdir(join(tmp, "deep"))).sort(), ["rootfs"]);
    assert.deepEqual(await readdir(tmp), ["deep"]);
    await assert.rejects(readFile("/tmp/evil3"), { code: "ENOENT" });
  });
});

describe("links that leave the archive", { concurrency: 4 }, () => {
  const target = "../../../outside.tar";
  cases([
    {
      title:
        "oci-archive: blob of a symlink to ../../../outside.tar: exit 5 UNSAFE_PATH naming entry and target",
      args: ["blob", `oci-archive:${archives.symlinkOut}`, layer0.digest],
      archive: archives.symlinkOut,
      exit: 5,
      code: "UNSAFE_PATH",
      names: [blobName(layer0.digest), target, "outside the archive"],
    },
    {
      title: "oci-archive: unpack through that symlink: exit 5, nothing unpacked outside",
      args: ["unpack", `oci-archive:${archives.symlinkOut}:v1`, out("unpack-symlink")],
      archive: archives.symlinkOut,
      exit: 5,
      code: "UNSAFE_PATH",
      names: [blobName(layer0.digest), target],
    },
    {
      title: "oci-archive: verify through that symlink: exit 5",
      args: ["verify", `oci-archive:${archives.symlinkOut}`],
      archive: archives.symlinkOut,
      exit: 5,
      code: "UNSAFE_PATH",
      names: [blobName(layer0.digest), target],
    },
    {
      title:
        "oci-archive: a symlink to /etc/passwd is resolved inside the archive: not found (exit 3), the host file is never read",
      args: ["blob", `oci-archive:${archives.symlinkAbsolute}`, layer0.digest],
      archive: archives.symlinkAbsolute,
      exit: 3,
      code: "BLOB_MISSING",
      names: [blobName(layer0.digest), "/etc/passwd", "not in the archive"],
      check: (r) => assert.equal(r.stdout.length, 0),
    },
    {
      title: "oci-archive: a hard link to ../outside.tar: exit 5 UNSAFE_PATH",
      args: ["blob", `oci-archive:${archives.hardlinkOut}`, layer0.digest],
      archive: archives.hardlinkOut,
      exit: 5,
      code: "UNSAFE_PATH",
      names: [blobName(layer0.digest), "../outside.tar"],
    },
    {
      title: "docker-archive: a <v1id>/layer.tar symlink to ../../outside.tar: exit 5 UNSAFE_PATH",
      args: ["inspect", `docker-archive:${archives.dockerSymlinkOut}`],
      archive: archives.dockerSymlinkOut,
      exit: 5,
      code: "UNSAFE_PATH",
      names: ["v1b/layer.tar", "../../outside.tar"],
    },
  ]);
});

describe("an inconsistent docker save archive", { concurrency: 4 }, () => {
  cases([
    {
      title: "fewer Layers than diff_ids: exit 5 INVALID_DOCUMENT naming manifest.json[0] and the config",
      args: ["ls", `docker-archive:${archives.dockerFewerLayers}`],
      archive: archives.dockerFewerLayers,
      exit: 5,
      code: "INVALID_DOCUMENT",
      names: ["manifest.json[0]", "1 layers", "2 diff_ids", `${hex(configDigest)}.json`],
    },
    {
      title: "fewer Layers than diff_ids: verify and unpack refuse it too",
      args: ["unpack", `docker-archive:${archives.dockerFewerLayers}`, out("unpack-fewer")],
      archive: archives.dockerFewerLayers,
      exit: 5,
      code: "INVALID_DOCUMENT",
      names: ["manifest.json[0]"],
    },
    {
      title: "manifest.json is an object, not an array: exit 5 INVALID_DOCUMENT",
      args: ["tags", `docker-archive:${archives.dockerNotArray}`],
      archive: archives.dockerNotArray,
      exit: 5,
      code: "INVALID_DOCUMENT",
      names: ["manifest.json", "expected an array", "an object"],
    },
  ]);
});

describe("docker-archive selectors that name nothing list what is there", { concurrency: 4 }, () => {
  const two = archives.dockerTwo;
  const listing = "@0: lab/a:1; @1: lab/b:2, example.com/c:3";
  cases([
    {
      title: "FILE:@7 out of range: exit 3, lists the images by position",
      args: ["digest", `docker-archive:${two}:@7`],
      archive: two,
      exit: 3,
      code: "TAG_NOT_FOUND",
      names: ["@7", "2 images", listing],
    },
    {
      title: "FILE:NAME:TAG not in RepoTags: exit 3, lists the RepoTags",
      args: ["inspect", `docker-archive:${two}:lab/nope:9`],
      archive: two,
      exit: 3,
      code: "TAG_NOT_FOUND",
      names: ["lab/nope:9", listing],
    },
    {
      title: "FILE alone with two images: exit 3, lists them",
      args: ["manifest", `docker-archive:${two}`],
      archive: two,
      exit: 3,
      code: "TAG_NOT_FOUND",
      names: [listing],
      check: (r) => assert.equal(r.stdout.length, 0),
    },
  ]);

  it("the images are there by position and by any of their names", async () => {
    for (const ref of [`${two}:@1`, `${two}:example.com/c:3`, `${two}:docker.io/lab/b:2`]) {
      const result = await runRoci(["config", `docker-archive:${ref}`]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(sha256(result.stdout), configDigest);
    }
  });
});
