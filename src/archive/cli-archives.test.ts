/**
 * Archives through the CLI, as a user meets them:
 *
 * 1. Archives made by other tools — skopeo's `oci-archive:` (one image, and `--all` of an index),
 *    skopeo's `docker-archive:`, `tar` of a layout with and without `./` prefixes, a gzip-compressed
 *    tar, and a hand-built Docker ≥ 25 hybrid (an OCI layout plus manifest.json) — are read by every
 *    read command (ls, tags, inspect, digest, manifest, config, blob, verify, unpack, export, copy),
 *    with the digests skopeo reports. Every run happens on a read-only bind mount of the directory
 *    holding the archives (EROFS even for root), and a subset as uid 65534 on a `chmod -R a-w` copy
 *    (EACCES): the directory's snapshot (the archives' mtimes and sizes included) never changes,
 *    nothing appears next to an archive, and a compressed one is decompressed into TMPDIR only, which
 *    is left empty.
 * 2. Archives written by roci (`roci copy SRC oci-archive:OUT.tar:TAG`, `docker-archive:OUT.tar:NAME:TAG`)
 *    are read by skopeo (inspect, copy) with the source's digests, are byte-identical when written
 *    twice, keep several images and tags, are readable both ways (a roci docker-archive is also an
 *    OCI archive), and a failed write leaves nothing behind. `ctr images import` and `docker load`
 *    run when a containerd or Docker daemon answers.
 *
 * Bad archives (truncated, inconsistent, unsafe) are in bad-archives.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, chown, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { handTar, put, scratch, sh, sha256, skopeoCopy, skopeoRawDigest } from "../test-support/archives.ts";
import { fixtures, type PlatformKey } from "../test-support/fixtures.ts";
import {
  diffSnapshots,
  snapshotTree,
  withReadOnlyBindMount,
  withUnwritableCopy,
} from "../test-support/readonly.ts";
import { NOBODY_GID, NOBODY_UID, type RunResult, runProgram, runRoci } from "../test-support/run.ts";

const fx = await fixtures();
const { single, multi } = fx.layouts;
const isRoot = process.getuid?.() === 0;
const needsRoot = isRoot ? false : "needs root (mount --bind, chmod of a copy, setpriv to uid 65534)";
const hostKey: PlatformKey = process.arch === "arm64" ? "linux/arm64/v8" : "linux/amd64";
const pinHost = process.arch === "x64" || process.arch === "arm64" ? [] : ["--platform", "linux/amd64"];
const hex = (digest: string): string => digest.slice("sha256:".length);
const lines = (out: Buffer): string[] => out.toString("utf8").split("\n").slice(0, -1);

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface RawManifest {
  config: Descriptor;
  layers: Descriptor[];
}

// ---------------------------------------------------------------------------------------------------
// The archives, made once by the peer tools (and one by hand) in one directory

/** A directory any user can write into (outputs of unpack, copy and export as uid 65534). */
async function openDir(parent: string, name: string): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o777);
  return dir;
}

/**
 * A Docker ≥ 25 `docker save` archive (SPEC-CHECKLIST §5.2) of the single fixture, by hand: an OCI
 * layout whose manifest references the config and the uncompressed layers (digest = diff_id), plus a
 * manifest.json into blobs/ and `repositories`.
 */
async function hybridTar(): Promise<{ bytes: Buffer; manifestDigest: string }> {
  const blob = (digest: string) => readFile(join(single.path, "blobs", "sha256", hex(digest)));
  const config = await blob(single.image.config.digest);
  const layers = await Promise.all(
    single.image.layers.map(async (layer) => gunzipSync(await blob(layer.digest))),
  );
  assert.deepEqual(layers.map(sha256), single.diffIds);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: single.image.config.digest, size: config.length },
      layers: layers.map((bytes) => ({ mediaType: OCI_LAYER, digest: sha256(bytes), size: bytes.length })),
    }),
  );
  const manifestDigest = sha256(manifest);
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      {
        mediaType: OCI_MANIFEST,
        digest: manifestDigest,
        size: manifest.length,
        annotations: {
          "io.containerd.image.name": "docker.io/lab/hybrid:1",
          "org.opencontainers.image.ref.name": "1",
        },
      },
    ],
  };
  const manifestJson = [
    {
      Config: `blobs/sha256/${hex(single.image.config.digest)}`,
      RepoTags: ["lab/hybrid:1"],
      Layers: single.diffIds.map((diffId) => `blobs/sha256/${hex(diffId)}`),
    },
  ];
  const blobs = [
    { digest: single.image.config.digest, data: config },
    { digest: manifestDigest, data: manifest },
    ...layers.map((data) => ({ digest: sha256(data), data })),
  ].sort((a, b) => a.digest.localeCompare(b.digest));
  const bytes = handTar([
    { name: "blobs/", typeflag: "5" },
    { name: "blobs/sha256/", typeflag: "5" },
    ...blobs.map(({ digest, data }) => ({ name: `blobs/sha256/${hex(digest)}`, data, mode: 0o444 })),
    { name: "index.json", data: JSON.stringify(index) },
    { name: "manifest.json", data: JSON.stringify(manifestJson) },
    { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
    {
      name: "repositories",
      data: JSON.stringify({ "lab/hybrid": { "1": hex(single.image.config.digest) } }),
    },
  ]);
  return { bytes, manifestDigest };
}

const work = await scratch("roci-cli-archives-");
/** Holds the input archives and nothing else: it is what gets mounted read-only and snapshotted. */
const inputs = join(work, "inputs");
await mkdir(inputs);
await chmod(inputs, 0o755);

const layoutTree = join(work, "tree");
await sh("cp", ["-a", single.path, layoutTree]);
const hybrid = await hybridTar();
await Promise.all([
  skopeoCopy(`oci:${single.path}:v1`, `oci-archive:${join(inputs, "skopeo-oci.tar")}:v1`),
  skopeoCopy(`oci:${multi.path}:multi`, `oci-archive:${join(inputs, "skopeo-multi.tar")}:multi`, true),
  skopeoCopy(`oci:${single.path}:v1`, `docker-archive:${join(inputs, "skopeo-docker.tar")}:lab/x:tag`),
  sh("tar", ["-C", layoutTree, "-cf", join(inputs, "dot.tar"), "."]),
  sh("tar", ["-C", layoutTree, "-cf", join(inputs, "named.tar"), "blobs", "index.json", "oci-layout"]),
  put(inputs, "hybrid.tar", hybrid.bytes),
]);
await put(inputs, "dot.tar.gz", await sh("gzip", ["-9", "-n", "-c", join(inputs, "dot.tar")]));
await put(inputs, "dot.tar.zst", await sh("zstd", ["-q", "-c", join(inputs, "dot.tar")]));

{
  const names = (await sh("tar", ["-tf", join(inputs, "dot.tar")])).toString("utf8");
  assert.match(names, /^\.\/oci-layout$/m, "dot.tar's entries start with ./");
  const plain = (await sh("tar", ["-tf", join(inputs, "named.tar")])).toString("utf8");
  assert.doesNotMatch(plain, /^\.\//m, "named.tar's entries have no ./");
  assert.match(plain, /^oci-layout$/m);
}

/**
 * What roci must synthesise for a docker save entry: skopeo's own manifest of it, except that an
 * uncompressed layer is labelled `…rootfs.diff.tar` (skopeo 1.9.3 calls every layer `.tar.gzip`).
 */
async function expectedDockerManifest(ref: string): Promise<{ digest: string; manifest: RawManifest }> {
  const raw = (await sh("skopeo", ["inspect", "--raw", ref])).toString("utf8");
  const fixed = raw.replaceAll(
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
  );
  return { digest: sha256(Buffer.from(fixed)), manifest: JSON.parse(fixed) as RawManifest };
}

const skopeoDigests = {
  single: (await skopeoRawDigest(`oci-archive:${join(inputs, "skopeo-oci.tar")}:v1`)).digest,
  multi: (await skopeoRawDigest(`oci-archive:${join(inputs, "skopeo-multi.tar")}:multi`)).digest,
  dot: (await skopeoRawDigest(`oci-archive:${join(inputs, "dot.tar")}`)).digest,
  named: (await skopeoRawDigest(`oci-archive:${join(inputs, "named.tar")}:v1`)).digest,
  hybrid: (await skopeoRawDigest(`oci-archive:${join(inputs, "hybrid.tar")}:1`)).digest,
};
const dockerExpected = await expectedDockerManifest(`docker-archive:${join(inputs, "skopeo-docker.tar")}`);
const hybridDockerExpected = await expectedDockerManifest(`docker-archive:${join(inputs, "hybrid.tar")}`);

describe("the inputs and what skopeo says about them", () => {
  it("skopeo reports the fixtures' digests for every OCI archive (so roci is checked against skopeo)", () => {
    assert.equal(skopeoDigests.single, single.refs.v1.digest);
    assert.equal(skopeoDigests.dot, single.refs.v1.digest);
    assert.equal(skopeoDigests.named, single.refs.v1.digest);
    assert.equal(skopeoDigests.multi, multi.index.digest);
    assert.equal(skopeoDigests.hybrid, hybrid.manifestDigest);
  });

  it("skopeo reads skopeo's and the hybrid's docker-archive as the same image (config and diff_ids)", () => {
    for (const expected of [dockerExpected, hybridDockerExpected]) {
      assert.equal(expected.manifest.config.digest, single.image.config.digest);
      assert.deepEqual(
        expected.manifest.layers.map((layer) => layer.digest),
        single.diffIds,
      );
    }
    assert.equal(hybridDockerExpected.digest, dockerExpected.digest);
  });
});

// ---------------------------------------------------------------------------------------------------
// 1. Every read command on every archive made by another tool

interface Subject {
  name: string;
  /** The archive's file name in `inputs`. */
  file: string;
  /** The whole archive (ls, tags, verify, blob). */
  store(archive: string): string;
  /** One image in it (inspect, digest, manifest, config, verify, unpack, export, copy). */
  image(archive: string): string;
  /** What the image reference resolves to, and skopeo's digest of it (OCI archives). */
  digest: string;
  skopeo?: string;
  tags: string[];
  /** The config chosen for the host platform. */
  config: string;
  blob: { digest: string; size: number };
  /** A file of the unpacked rootfs and its content. */
  file1: { path: string; content?: string };
}

const singleFile = { path: "etc/greeting.txt", content: "hello from the base layer\n" };
const layer0 = single.image.layers[0]!;
const asDockerLayer = { digest: single.diffIds[1]!, size: 10240 };

const subjects: Subject[] = [
  {
    name: "skopeo oci-archive",
    file: "skopeo-oci.tar",
    store: (a) => `oci-archive:${a}`,
    image: (a) => `oci-archive:${a}:v1`,
    digest: single.refs.v1.digest,
    skopeo: skopeoDigests.single,
    tags: ["v1"],
    config: single.image.config.digest,
    blob: layer0,
    file1: singleFile,
  },
  {
    name: "skopeo copy --all of an index into an oci-archive",
    file: "skopeo-multi.tar",
    store: (a) => `oci-archive:${a}`,
    image: (a) => `oci-archive:${a}:multi`,
    digest: multi.index.digest,
    skopeo: skopeoDigests.multi,
    tags: ["multi"],
    config: multi.platforms[hostKey].config.digest,
    blob: multi.platforms["linux/arm64/v8"].layers.at(-1)!,
    file1: { path: "etc/greeting.txt" },
  },
  {
    name: "skopeo docker-archive",
    file: "skopeo-docker.tar",
    store: (a) => `docker-archive:${a}`,
    image: (a) => `docker-archive:${a}:lab/x:tag`,
    digest: dockerExpected.digest,
    tags: ["docker.io/lab/x:tag"],
    config: single.image.config.digest,
    blob: asDockerLayer,
    file1: singleFile,
  },
  {
    name: "tar of a layout with ./ prefixes, as a bare path",
    file: "dot.tar",
    store: (a) => a,
    image: (a) => `${a}:v1`,
    digest: single.refs.v1.digest,
    skopeo: skopeoDigests.dot,
    tags: ["v1"],
    config: single.image.config.digest,
    blob: single.image.layers[1]!,
    file1: singleFile,
  },
  {
    name: "tar of a layout without ./ prefixes, as oci-layout://FILE.tar",
    file: "named.tar",
    store: (a) => `oci-layout://${a}`,
    image: (a) => `oci-layout://${a}:v1`,
    digest: single.refs.v1.digest,
    skopeo: skopeoDigests.named,
    tags: ["v1"],
    config: single.image.config.digest,
    blob: layer0,
    file1: singleFile,
  },
  {
    name: "gzip-compressed tar of a layout",
    file: "dot.tar.gz",
    store: (a) => `oci-archive:${a}`,
    image: (a) => `oci-archive:${a}:v1`,
    digest: single.refs.v1.digest,
    skopeo: skopeoDigests.dot,
    tags: ["v1"],
    config: single.image.config.digest,
    blob: layer0,
    file1: singleFile,
  },
  {
    name: "Docker 25 hybrid as docker-archive:",
    file: "hybrid.tar",
    store: (a) => `docker-archive:${a}`,
    image: (a) => `docker-archive:${a}:lab/hybrid:1`,
    digest: hybridDockerExpected.digest,
    tags: ["lab/hybrid:1"],
    config: single.image.config.digest,
    blob: asDockerLayer,
    file1: singleFile,
  },
  {
    name: "Docker 25 hybrid as oci-archive:",
    file: "hybrid.tar",
    store: (a) => `oci-archive:${a}`,
    image: (a) => `oci-archive:${a}:1`,
    digest: hybrid.manifestDigest,
    skopeo: skopeoDigests.hybrid,
    tags: ["1", "docker.io/lab/hybrid:1"],
    config: single.image.config.digest,
    blob: { digest: single.diffIds[0]!, size: 10240 },
    file1: singleFile,
  },
];

/** Where a run may write: its own TMPDIR (must be empty afterwards) and an output directory. */
interface Scratch {
  tmp: string;
  out: string;
}

interface ReadCommand {
  label: string;
  args(s: Subject, archive: string, scratch: Scratch): string[];
  check(result: RunResult, s: Subject, scratch: Scratch): Promise<void> | void;
}

const checkVerify = (result: RunResult): void => {
  assert.match(lines(result.stdout).at(-1) ?? "", /^ok: .* 0 error\(s\), 0 warning\(s\)$/);
};

/** Every blob file of a layout hashes to its name; index.json names `digest` as `tag`. */
async function checkCopiedLayout(layout: string, digest: string, tag: string): Promise<void> {
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests: Descriptor[] };
  assert.deepEqual(
    index.manifests.map((m) => [m.digest, m.annotations?.["org.opencontainers.image.ref.name"]]),
    [[digest, tag]],
  );
  const names = await readdir(join(layout, "blobs", "sha256"));
  assert.ok(names.includes(hex(digest)), "the root blob was copied");
  for (const name of names) {
    assert.equal(sha256(await readFile(join(layout, "blobs", "sha256", name))), `sha256:${name}`);
  }
}

const readCommands: ReadCommand[] = [
  {
    label: "ls",
    args: (s, a) => ["ls", s.store(a)],
    check: (r, s) => {
      const rows = lines(r.stdout);
      assert.match(rows[0] ?? "", /^NAME\s+DIGEST\s+MEDIA TYPE\s+PLATFORMS$/);
      assert.equal(rows.length, 2);
      assert.ok(rows[1]?.includes(s.digest), `lists ${s.digest}: ${rows[1]}`);
    },
  },
  {
    label: "tags",
    args: (s, a) => ["tags", s.store(a)],
    check: (r, s) => assert.deepEqual(lines(r.stdout), s.tags),
  },
  {
    label: "inspect",
    args: (s, a) => ["inspect", ...pinHost, s.image(a)],
    check: (r, s) => {
      const text = r.stdout.toString("utf8");
      assert.ok(text.includes(`Digest:      ${s.digest}\n`), text);
      assert.ok(text.includes(`Config:      ${s.config}\n`), text);
    },
  },
  {
    label: "digest",
    args: (s, a) => ["digest", s.image(a)],
    check: (r, s) => {
      assert.equal(r.stdout.toString("utf8"), `${s.digest}\n`);
      if (s.skopeo !== undefined) assert.equal(s.digest, s.skopeo, "the digest skopeo inspect --raw gives");
    },
  },
  {
    label: "manifest",
    args: (s, a) => ["manifest", s.image(a)],
    check: (r, s) => assert.equal(sha256(r.stdout), s.digest),
  },
  {
    label: "config",
    args: (s, a) => ["config", ...pinHost, s.image(a)],
    check: (r, s) => assert.equal(sha256(r.stdout), s.config),
  },
  {
    label: "blob",
    args: (s, a) => ["blob", s.store(a), s.blob.digest],
    check: (r, s) => {
      assert.equal(sha256(r.stdout), s.blob.digest);
      assert.equal(r.stdout.length, s.blob.size);
    },
  },
  { label: "verify (the archive)", args: (s, a) => ["verify", s.store(a)], check: checkVerify },
  { label: "verify (the image)", args: (s, a) => ["verify", s.image(a)], check: checkVerify },
  {
    label: "unpack",
    args: (s, a, w) => ["unpack", ...pinHost, s.image(a), join(w.out, "rootfs")],
    check: async (_r, s, w) => {
      const content = await readFile(join(w.out, "rootfs", s.file1.path), "utf8");
      if (s.file1.content !== undefined) assert.equal(content, s.file1.content);
    },
  },
  {
    label: "export",
    args: (s, a) => ["export", ...pinHost, s.image(a)],
    check: (r, s) => {
      assert.equal(r.stdout.length % 512, 0, "a whole number of tar blocks");
      assert.ok(r.stdout.includes(Buffer.from(s.file1.path)), `the tar holds ${s.file1.path}`);
    },
  },
  {
    label: "copy into a layout",
    args: (s, a, w) => ["copy", s.image(a), `${join(w.out, "layout")}:copied`],
    check: (_r, s, w) => checkCopiedLayout(join(w.out, "layout"), s.digest, "copied"),
  },
];

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

let runs = 0;
/** A fresh TMPDIR and output directory for one run, writable by uid 65534 too. */
async function freshScratch(): Promise<Scratch> {
  const base = await openDir(work, `run-${runs++}`);
  return { tmp: await openDir(base, "tmp"), out: await openDir(base, "out") };
}

interface Environment {
  title: string;
  scope: (src: string, fn: (path: string) => Promise<void>) => Promise<void>;
  asNobody: boolean;
  /** The subjects run here. */
  subjects(s: Subject): boolean;
  /** The errno a write into the directory gets. */
  errno: "EROFS" | "EACCES";
}

const environments: Environment[] = [
  {
    title: "on a read-only bind mount of the archives' directory (EROFS), as root",
    scope: withReadOnlyBindMount,
    asNobody: false,
    subjects: () => true,
    errno: "EROFS",
  },
  {
    title: "as uid 65534 on a chmod -R a-w copy of the archives' directory (EACCES)",
    scope: withUnwritableCopy,
    asNobody: true,
    subjects: (s) =>
      [
        "skopeo docker-archive",
        "gzip-compressed tar of a layout",
        "Docker 25 hybrid as oci-archive:",
      ].includes(s.name),
    errno: "EACCES",
  },
];

/** Tries to create a file in `dir` (as nobody when asked) and returns the errno, or "ok". */
async function probeWrite(dir: string, asNobody: boolean): Promise<string> {
  const probe = `
    const fs = require("node:fs"), path = require("node:path");
    try { fs.writeFileSync(path.join(process.argv[1], "probe"), "", { flag: "wx" }); process.stdout.write("ok"); }
    catch (e) { process.stdout.write(e.code); }
  `;
  const result = await runProgram(process.execPath, ["-e", probe, dir], { asNobody });
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.toString("utf8");
}

for (const env of environments) {
  describe(`every read command on archives made by other tools, ${env.title}`, { skip: needsRoot }, () => {
    let scope: { path: string; release(): Promise<void> } | undefined;
    let initial: string[] = [];
    const root = (): string => scope!.path;

    before(async () => {
      scope = await enter(env.scope, inputs);
      initial = await snapshotTree(root());
    });
    after(async () => {
      await scope?.release();
    });

    it(`really refuses writes there (${env.errno})`, async () => {
      assert.equal(await probeWrite(root(), env.asNobody), env.errno);
    });

    describe("each command exits 0, prints what skopeo and fixtures.json say, and changes nothing", {
      concurrency: 4,
    }, () => {
      for (const subject of subjects.filter(env.subjects)) {
        for (const command of readCommands) {
          it(`${command.label} on the ${subject.name}`, async () => {
            const archive = join(root(), subject.file);
            const w = await freshScratch();
            if (env.asNobody) await chown(w.out, NOBODY_UID, NOBODY_GID);
            const args = command.args(subject, archive, w);
            const file = await stat(archive, { bigint: true });
            const before = await snapshotTree(root());
            const result = await runRoci(args, { asNobody: env.asNobody, env: { TMPDIR: w.tmp } });
            assert.deepEqual(diffSnapshots(before, await snapshotTree(root())), [], `${root()} changed`);
            const context = `roci ${args.join(" ")}\nstderr: ${result.stderr}`;
            assert.equal(result.code, 0, context);
            assert.equal(result.stderr, "", context);
            await command.check(result, subject, w);
            const now = await stat(archive, { bigint: true });
            assert.equal(now.mtimeNs, file.mtimeNs, "the archive's mtime");
            assert.equal(now.size, file.size, "the archive's size");
            assert.deepEqual(
              await readdir(w.tmp),
              [],
              "nothing left in TMPDIR (the decompressed copy is removed)",
            );
          });
        }
      }
    });

    it("decompresses a compressed archive into TMPDIR, never beside it, and removes it afterwards", async () => {
      for (const file of ["dot.tar.gz", "dot.tar.zst"]) {
        const archive = join(root(), file);
        const w = await freshScratch();
        const result = await runRoci(["--debug", "verify", `oci-archive:${archive}:v1`], {
          asNobody: env.asNobody,
          env: { TMPDIR: w.tmp },
        });
        assert.equal(result.code, 0, result.stderr);
        const compression = file.endsWith(".gz") ? "gzip" : "zstd";
        assert.ok(
          result.stderr.includes(`decompressing ${archive} (${compression}) into ${w.tmp}/roci-archive-`),
          result.stderr,
        );
        checkVerify(result);
        assert.deepEqual(await readdir(w.tmp), []);
      }
    });

    it("leaves the directory exactly as it was: no new, changed or removed entry", async () => {
      assert.deepEqual(diffSnapshots(initial, await snapshotTree(root())), []);
    });
  });
}

describe("docker-archive selectors on skopeo's archive", { concurrency: 4 }, () => {
  const archive = join(inputs, "skopeo-docker.tar");
  for (const ref of [
    `docker-archive:${archive}`,
    `docker-archive:${archive}:@0`,
    `docker-archive:${archive}:lab/x:tag`,
    `docker-archive:${archive}:docker.io/lab/x:tag`,
  ]) {
    it(`digest ${ref.slice(archive.length + "docker-archive:".length) || "(no selector)"}`, async () => {
      const result = await runRoci(["digest", ref]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString("utf8"), `${dockerExpected.digest}\n`);
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// 2. Archives written by roci

const REF_NAME = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME = "io.containerd.image.name";

async function roci(args: string[]): Promise<RunResult> {
  const result = await runRoci(args);
  assert.equal(result.code, 0, `roci ${args.join(" ")}\nstderr: ${result.stderr}`);
  return result;
}

async function tarEntry(archive: string, name: string): Promise<string> {
  return (await sh("tar", ["-xOf", archive, name])).toString("utf8");
}

async function indexOf(archive: string): Promise<Descriptor[]> {
  return (JSON.parse(await tarEntry(archive, "index.json")) as { manifests: Descriptor[] }).manifests;
}

interface DockerSaveEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/**
 * The snapshot of what is in `dir` (not of `dir` itself, whose mtime a write attempt beside the
 * output changes: the staging directory is created there and removed again).
 */
async function contents(dir: string): Promise<string[]> {
  return (await snapshotTree(dir)).filter((line) => !line.startsWith(".\t"));
}

/** Leftovers of a write next to `archive`: the staging layout and the temp tar. */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.includes(".roci-") || name.endsWith(".partial"));
}

describe("roci copy SRC oci-archive:OUT.tar:TAG", { concurrency: 4 }, () => {
  it("skopeo inspects and copies it with the source's digest (one image)", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `oci-archive:${out}:v1`]);
    assert.equal((await skopeoRawDigest(`oci-archive:${out}:v1`)).digest, single.refs.v1.digest);
    assert.equal((await skopeoRawDigest(`oci-archive:${out}`)).digest, single.refs.v1.digest);
    const inspected = JSON.parse(
      (await sh("skopeo", ["inspect", `oci-archive:${out}:v1`])).toString("utf8"),
    ) as {
      Digest: string;
      Layers: string[];
    };
    assert.equal(inspected.Digest, single.refs.v1.digest);
    assert.deepEqual(
      inspected.Layers,
      single.image.layers.map((l) => l.digest),
    );
    const layout = join(dir, "skopeo-layout");
    await skopeoCopy(`oci-archive:${out}:v1`, `oci:${layout}:copied`);
    assert.equal((await skopeoRawDigest(`oci:${layout}:copied`)).digest, single.refs.v1.digest);
    assert.deepEqual(await leftovers(dir), []);
  });

  it("keeps an index whole (all platforms): skopeo copy --all gives the same index digest", async () => {
    const dir = await scratch();
    const out = join(dir, "multi.tar");
    await roci(["copy", `${multi.path}:multi`, `oci-archive:${out}:multi`]);
    assert.equal((await skopeoRawDigest(`oci-archive:${out}:multi`)).digest, multi.index.digest);
    const layout = join(dir, "skopeo-layout");
    await skopeoCopy(`oci-archive:${out}:multi`, `oci:${layout}:m`, true);
    assert.equal((await skopeoRawDigest(`oci:${layout}:m`)).digest, multi.index.digest);
    for (const platform of Object.values(multi.platforms)) {
      const blob = join(layout, "blobs", "sha256", hex(platform.manifest.digest));
      assert.equal(sha256(await readFile(blob)), platform.manifest.digest, "every platform came along");
    }
  });

  it("is byte-identical when written twice from the same source, and when rewritten in place", async () => {
    const dir = await scratch();
    const [a, b] = [join(dir, "a.tar"), join(dir, "b.tar")];
    await roci(["copy", `${multi.path}:multi`, `oci-archive:${a}:multi`]);
    await roci(["copy", `${multi.path}:multi`, `oci-archive:${b}:multi`]);
    const first = await readFile(a);
    assert.ok(first.equals(await readFile(b)), "a.tar and b.tar differ");
    await roci(["copy", `${multi.path}:multi`, `oci-archive:${a}:multi`]);
    assert.ok(first.equals(await readFile(a)), "copying the same image again changed the archive");
  });

  it("names one image several times with out:t1,t2, and a second copy into OUT.tar keeps the first image", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `oci-archive:${out}:t1,t2`]);
    await roci(["copy", `${fx.layouts.tagged.path}:base`, `oci-archive:${out}:base`]);
    const manifests = await indexOf(out);
    assert.deepEqual(
      manifests.map((m) => [m.annotations?.[REF_NAME], m.digest]),
      [
        ["t1", single.refs.v1.digest],
        ["t2", single.refs.v1.digest],
        ["base", fx.layouts.tagged.refs.base.digest],
      ],
    );
    for (const [tag, digest] of [
      ["t1", single.refs.v1.digest],
      ["t2", single.refs.v1.digest],
      ["base", fx.layouts.tagged.refs.base.digest],
    ] as const) {
      assert.equal((await skopeoRawDigest(`oci-archive:${out}:${tag}`)).digest, digest, tag);
      assert.equal(
        (await roci(["digest", `oci-archive:${out}:${tag}`])).stdout.toString("utf8"),
        `${digest}\n`,
      );
    }
    assert.deepEqual(lines((await roci(["tags", `oci-archive:${out}`])).stdout), ["t1", "t2", "base"]);
    checkVerify(await roci(["verify", `oci-archive:${out}`]));
    assert.deepEqual(await leftovers(dir), []);
  });

  it("copies out of an archive into another archive, and out of an archive into itself", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `oci-archive:${join(inputs, "skopeo-oci.tar")}:v1`, `oci-archive:${out}:v1`]);
    await roci(["copy", `oci-archive:${out}:v1`, `oci-archive:${out}:v2`]);
    assert.deepEqual(lines((await roci(["tags", `oci-archive:${out}`])).stdout), ["v1", "v2"]);
    assert.equal((await skopeoRawDigest(`oci-archive:${out}:v2`)).digest, single.refs.v1.digest);
    checkVerify(await roci(["verify", `oci-archive:${out}`]));
  });
});

describe("roci copy SRC docker-archive:OUT.tar:NAME:TAG", { concurrency: 4 }, () => {
  it("is a docker save archive skopeo inspects and copies, and also an OCI archive with the source's digest", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `docker-archive:${out}:lab/app:1`]);

    const saved = JSON.parse(await tarEntry(out, "manifest.json")) as DockerSaveEntry[];
    assert.equal(saved.length, 1);
    assert.deepEqual(saved[0]!.RepoTags, ["lab/app:1"]);
    assert.equal(saved[0]!.Config, `blobs/sha256/${hex(single.image.config.digest)}`);
    assert.equal(saved[0]!.Layers.length, single.diffIds.length, "as many layers as diff_ids");
    const manifests = await indexOf(out);
    assert.deepEqual(manifests[0]?.annotations, {
      [CONTAINERD_NAME]: "docker.io/lab/app:1",
      [REF_NAME]: "1",
    });

    const inspected = JSON.parse(
      (await sh("skopeo", ["inspect", `docker-archive:${out}`])).toString("utf8"),
    ) as {
      Architecture: string;
    };
    assert.equal(inspected.Architecture, "amd64");
    const raw = JSON.parse(
      (await sh("skopeo", ["inspect", "--raw", `docker-archive:${out}:lab/app:1`])).toString(),
    ) as RawManifest;
    assert.equal(raw.config.digest, single.image.config.digest);
    const layout = join(dir, "from-docker");
    await skopeoCopy(`docker-archive:${out}`, `oci:${layout}:x`);
    // skopeo converts the image to OCI on the way (so the digests change), keeping its layers.
    const copied = (await skopeoRawDigest(`oci:${layout}:x`)).json as RawManifest;
    assert.equal(copied.layers.length, single.diffIds.length);

    // The same file as an OCI archive: skopeo and roci both see the source manifest.
    assert.equal((await skopeoRawDigest(`oci-archive:${out}:1`)).digest, single.refs.v1.digest);
    await skopeoCopy(`oci-archive:${out}:1`, `oci:${join(dir, "from-oci")}:y`);
    assert.equal(
      (await roci(["digest", `oci-archive:${out}:1`])).stdout.toString("utf8"),
      `${single.refs.v1.digest}\n`,
    );
    checkVerify(await roci(["verify", `oci-archive:${out}`]));
    checkVerify(await roci(["verify", `docker-archive:${out}`]));
    // And as docker-archive through roci: the image skopeo's docker-archive reader sees.
    const synthesised = await expectedDockerManifest(`docker-archive:${out}`);
    const manifest = JSON.parse(
      (await roci(["manifest", `docker-archive:${out}:lab/app:1`])).stdout.toString(),
    ) as RawManifest;
    assert.equal(manifest.config.digest, synthesised.manifest.config.digest);
    assert.deepEqual(await leftovers(dir), []);
  });

  it("narrows an index to the host's platform (a docker save archive holds single-platform images)", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${multi.path}:multi`, `docker-archive:${out}:lab/multi:1`]);
    assert.equal(
      (await skopeoRawDigest(`oci-archive:${out}:1`)).digest,
      multi.platforms[hostKey].manifest.digest,
    );
    const saved = JSON.parse(await tarEntry(out, "manifest.json")) as DockerSaveEntry[];
    assert.equal(saved[0]!.Config, `blobs/sha256/${hex(multi.platforms[hostKey].config.digest)}`);
  });

  it("is byte-identical when written twice from the same source", async () => {
    const dir = await scratch();
    const [a, b] = [join(dir, "a.tar"), join(dir, "b.tar")];
    await roci(["copy", `${single.path}:v1`, `docker-archive:${a}:lab/app:1`]);
    await roci(["copy", `${single.path}:v1`, `docker-archive:${b}:lab/app:1`]);
    assert.ok((await readFile(a)).equals(await readFile(b)), "a.tar and b.tar differ");
  });

  it("keeps both images when two copies go into the same OUT.tar; each is found by name and by @N", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `docker-archive:${out}:lab/a:1`]);
    await roci(["copy", `${fx.layouts.tagged.path}:base`, `docker-archive:${out}:lab/b:2`]);
    const saved = JSON.parse(await tarEntry(out, "manifest.json")) as DockerSaveEntry[];
    assert.deepEqual(
      saved.map((entry) => entry.RepoTags),
      [["lab/a:1"], ["lab/b:2"]],
    );
    const configs = [single.image.config.digest, fx.layouts.tagged.images.base.config.digest];
    for (const [i, name] of ["lab/a:1", "lab/b:2"].entries()) {
      const raw = JSON.parse(
        (await sh("skopeo", ["inspect", "--raw", `docker-archive:${out}:${name}`])).toString(),
      ) as RawManifest;
      assert.equal(raw.config.digest, configs[i], name);
      const byIndex = JSON.parse(
        (await sh("skopeo", ["inspect", "--raw", `docker-archive:${out}:@${i}`])).toString(),
      ) as RawManifest;
      assert.equal(byIndex.config.digest, configs[i], `@${i}`);
      const viaRoci = await roci(["config", `docker-archive:${out}:${name}`]);
      assert.equal(sha256(viaRoci.stdout), configs[i]);
    }
    assert.deepEqual(lines((await roci(["tags", `docker-archive:${out}`])).stdout), ["lab/a:1", "lab/b:2"]);
  });

  it("refuses to add to a skopeo docker-archive it cannot rewrite, and leaves that file alone (exit 6)", async () => {
    const dir = await scratch();
    const out = join(dir, "legacy.tar");
    await skopeoCopy(`oci:${single.path}:v1`, `docker-archive:${out}:lab/x:tag`);
    const before = await contents(dir);
    const result = await runRoci(["copy", `${single.path}:v1`, `docker-archive:${out}:lab/y:1`]);
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, /CONFLICT/);
    assert.ok(result.stderr.includes(out), result.stderr);
    assert.deepEqual(diffSnapshots(before, await contents(dir)), []);
  });
});

describe("a failed archive write leaves no OUT.tar and no staging directory", { concurrency: 2 }, () => {
  const corrupt = fx.layouts["corrupt-blob"];
  const missing = fx.layouts["missing-blob"];
  const cases = [
    { source: `${corrupt.path}:v1`, exit: 5, code: "DIGEST_MISMATCH", names: hex(corrupt.corrupt.digest) },
    { source: `${missing.path}:v1`, exit: 3, code: "BLOB_MISSING", names: hex(missing.missing.digest) },
  ];
  const destinations = (out: string) => [`oci-archive:${out}:v1`, `docker-archive:${out}:lab/app:1`];

  /** Runs the failing copy and checks its error, the absent output and the untouched directory. */
  async function failingCopy(
    source: string,
    destination: string,
    dir: string,
    expected: { exit: number; code: string; names: string },
    jobs: string[],
  ): Promise<void> {
    const before = await contents(dir);
    const result = await runRoci(["copy", ...jobs, source, destination]);
    const context = `roci ${["copy", ...jobs, source, destination].join(" ")}\nstderr: ${result.stderr}`;
    assert.equal(result.code, expected.exit, context);
    assert.match(result.stderr, new RegExp(`\\[${expected.code}\\]`), context);
    assert.ok(result.stderr.includes(expected.names), context);
    assert.doesNotMatch(result.stderr, /INTERNAL|ENOTEMPTY/, context);
    assert.deepEqual(await leftovers(dir), [], context);
    assert.deepEqual(diffSnapshots(before, await contents(dir)), [], context);
  }

  it("one blob at a time (-j 1): the source's error, nothing written", async () => {
    for (const c of cases) {
      for (const destination of destinations("out.tar")) {
        const dir = await scratch();
        await failingCopy(c.source, destination.replace("out.tar", join(dir, "out.tar")), dir, c, [
          "-j",
          "1",
        ]);
      }
    }
  });

  it("into an existing archive: the archive is left byte for byte as it was", async () => {
    const dir = await scratch();
    const out = join(dir, "existing.tar");
    await roci(["copy", `${multi.path}:multi`, `oci-archive:${out}:multi`]);
    const multiLayers = Object.values(multi.platforms).flatMap((p) => p.layers.map((l) => l.digest));
    assert.ok(!multiLayers.includes(corrupt.corrupt.digest), "the corrupt blob must not already be there");
    await failingCopy(`${corrupt.path}:v1`, `oci-archive:${out}:v1`, dir, cases[0]!, ["-j", "1"]);
  });

  it("with the default --jobs 4: the source's error, nothing written (repeated, the failure is a race)", async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      for (const c of cases) {
        for (const destination of destinations("out.tar")) {
          const dir = await scratch();
          await failingCopy(c.source, destination.replace("out.tar", join(dir, "out.tar")), dir, c, []);
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Optional consumers: containerd and Docker

function unavailable(file: string, args: string[], what: string): string | false {
  const probe = spawnSync(file, args, { encoding: "utf8", timeout: 10_000 });
  if (probe.error) return `${file} is not installed (${(probe.error as NodeJS.ErrnoException).code})`;
  if (probe.status !== 0)
    return `${what} does not answer: ${(probe.stderr || probe.stdout).trim().split("\n")[0]}`;
  return false;
}

describe("ctr images import of a roci docker-archive", {
  skip: unavailable("ctr", ["version"], "containerd (ctr version)"),
}, () => {
  it("imports it under the name it was given", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `docker-archive:${out}:lab/roci-ctr-test:1`]);
    await sh("ctr", ["images", "import", out]);
    try {
      const listed = (await sh("ctr", ["images", "ls", "-q"])).toString("utf8");
      assert.match(listed, /^docker\.io\/lab\/roci-ctr-test:1$/m);
    } finally {
      await sh("ctr", ["images", "rm", "docker.io/lab/roci-ctr-test:1"]).catch(() => undefined);
    }
  });
});

describe("docker load of a roci docker-archive", {
  skip: unavailable("docker", ["info"], "the Docker daemon (docker info)"),
}, () => {
  it("loads it under the name it was given, with the source's config", async () => {
    const dir = await scratch();
    const out = join(dir, "out.tar");
    await roci(["copy", `${single.path}:v1`, `docker-archive:${out}:lab/roci-docker-test:1`]);
    const loaded = (await sh("docker", ["load", "-i", out])).toString("utf8");
    try {
      assert.match(loaded, /lab\/roci-docker-test:1/);
      const id = (await sh("docker", ["image", "inspect", "--format", "{{.Id}}", "lab/roci-docker-test:1"]))
        .toString("utf8")
        .trim();
      assert.ok([single.image.config.digest, single.refs.v1.digest].includes(id), id);
    } finally {
      await sh("docker", ["rmi", "lab/roci-docker-test:1"]).catch(() => undefined);
    }
  });
});
