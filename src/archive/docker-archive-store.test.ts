import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import type { Digest } from "../digest/digest.ts";
import { isRociError, type RociErrorCode } from "../errors.ts";
import { type Descriptor, parseManifest } from "../spec/documents.ts";
import { MediaType } from "../spec/media-types.ts";
import {
  expectDirUnchanged,
  flipByte,
  scratch,
  sh,
  sha256,
  skopeoCopy,
  skopeoRawDigest,
} from "../test-support/archives.ts";
import { fixtures } from "../test-support/fixtures.ts";
import { withReadOnlyBindMount } from "../test-support/readonly.ts";
import { DockerArchiveStore, type DockerSaveEntry } from "./docker-archive-store.ts";
import { OciArchiveStore } from "./oci-archive-store.ts";

const rejectsWith =
  (code: RociErrorCode, ...mentions: string[]) =>
  (error: unknown): boolean => {
    assert.ok(isRociError(error), `expected a RociError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const text of mentions)
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`);
    return true;
  };

const hex = (digest: string): string => digest.slice("sha256:".length);

interface RawManifest {
  config: Descriptor;
  layers: Descriptor[];
}

/** Fetches (and so verifies) the synthesised manifest, the config and every layer; returns the manifest. */
async function fetchImage(store: DockerArchiveStore, manifest: Descriptor): Promise<RawManifest> {
  const bytes = await buffer(await store.fetch(manifest));
  const parsed = parseManifest(bytes, "synthesised manifest").value;
  await buffer(await store.fetch(parsed.config));
  for (const layer of parsed.layers) await buffer(await store.fetch(layer));
  return parsed;
}

/** The single fixture as the pieces a docker save archive is made of. */
async function singleImage(): Promise<{
  config: Buffer;
  configDigest: string;
  gzipLayers: Buffer[];
  layers: Buffer[];
  diffIds: string[];
}> {
  const { single } = (await fixtures()).layouts;
  const blob = (digest: string) => readFile(join(single.path, "blobs", "sha256", hex(digest)));
  const config = await blob(single.image.config.digest);
  const gzipLayers = await Promise.all(single.image.layers.map((layer) => blob(layer.digest)));
  const layers = gzipLayers.map((bytes) => gunzipSync(bytes));
  assert.deepEqual(layers.map(sha256), single.diffIds);
  return { config, configDigest: single.image.config.digest, gzipLayers, layers, diffIds: single.diffIds };
}

/** Writes `files` (path → bytes) under a fresh directory and tars it with `tar -C dir -cf out .`. */
async function tarOf(
  files: Record<string, Buffer | string>,
  name = "image.tar",
): Promise<{ archive: string; dir: string }> {
  const dir = await scratch();
  const tree = join(dir, "tree");
  for (const [path, bytes] of Object.entries(files)) {
    await mkdir(join(tree, path, ".."), { recursive: true });
    await writeFile(join(tree, path), bytes);
  }
  const archive = join(dir, name);
  await sh("tar", ["-C", tree, "-cf", archive, "."]);
  return { archive, dir };
}

/** A Docker ≥ 25 style archive: an OCI layout of uncompressed layers plus manifest.json into blobs/. */
async function hybridArchive(options: { layers: "uncompressed" | "gzip" } = { layers: "uncompressed" }) {
  const image = await singleImage();
  const layerBytes = options.layers === "gzip" ? image.gzipLayers : image.layers;
  const layerDigests = layerBytes.map(sha256);
  const ociManifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: image.configDigest, size: image.config.length },
      layers: layerBytes.map((bytes, i) => ({
        mediaType: options.layers === "gzip" ? MediaType.ociLayerGzip : MediaType.ociLayer,
        digest: layerDigests[i],
        size: bytes.length,
      })),
    }),
  );
  const manifestDigest = sha256(ociManifest);
  const files: Record<string, Buffer | string> = {
    "oci-layout": '{"imageLayoutVersion":"1.0.0"}',
    "index.json": JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [
        {
          mediaType: MediaType.ociManifest,
          digest: manifestDigest,
          size: ociManifest.length,
          annotations: {
            "io.containerd.image.name": "docker.io/lab/hybrid:1",
            "org.opencontainers.image.ref.name": "1",
          },
        },
      ],
    }),
    "manifest.json": JSON.stringify([
      {
        Config: `blobs/sha256/${hex(image.configDigest)}`,
        RepoTags: ["lab/hybrid:1"],
        Layers: layerDigests.map((digest) => `blobs/sha256/${hex(digest)}`),
      },
    ]),
    repositories: JSON.stringify({ "lab/hybrid": { "1": hex(image.configDigest) } }),
    [`blobs/sha256/${hex(image.configDigest)}`]: image.config,
    [`blobs/sha256/${hex(manifestDigest)}`]: ociManifest,
  };
  layerBytes.forEach((bytes, i) => {
    files[`blobs/sha256/${hex(layerDigests[i] as string)}`] = bytes;
  });
  return { ...(await tarOf(files, "hybrid.tar")), image, manifestDigest, layerDigests };
}

async function skopeoDockerArchive(name = "lab/x:tag"): Promise<{ archive: string; dir: string }> {
  const { single } = (await fixtures()).layouts;
  const dir = await scratch();
  const archive = join(dir, "docker.tar");
  await skopeoCopy(`oci:${single.path}:v1`, `docker-archive:${archive}:${name}`);
  return { archive, dir };
}

/** Extracts an archive, lets `edit` change the tree, and tars it again (symlinks kept). */
async function rewrite(archive: string, edit: (tree: string) => Promise<void>): Promise<string> {
  const dir = await scratch();
  const tree = join(dir, "tree");
  await mkdir(tree);
  await sh("tar", ["-C", tree, "-xf", archive]);
  await edit(tree);
  const out = join(dir, "rewritten.tar");
  await sh("tar", ["-C", tree, "-cf", out, "."]);
  return out;
}

async function editManifestJson(
  tree: string,
  change: (entries: DockerSaveEntry[]) => unknown,
): Promise<void> {
  const path = join(tree, "manifest.json");
  const entries = JSON.parse(await readFile(path, "utf8")) as DockerSaveEntry[];
  await writeFile(path, JSON.stringify(change(entries)));
}

describe("DockerArchiveStore: skopeo's docker-archive (legacy layout)", () => {
  it("synthesises a schema 2 manifest: config by its bytes, layers by diff_id, as skopeo reports them", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive, dir } = await skopeoDockerArchive();
    const skopeo = (await skopeoRawDigest(`docker-archive:${archive}`)).json as RawManifest;
    await expectDirUnchanged(dir, async () => {
      const store = await DockerArchiveStore.open(archive);
      assert.equal(store.location, archive);
      assert.deepEqual(await store.tags(), ["docker.io/lab/x:tag"]);
      const manifest = await store.resolveEntry({});
      assert.equal(manifest.mediaType, MediaType.dockerManifest);
      const parsed = await fetchImage(store, manifest);
      assert.deepEqual(parsed.config, {
        mediaType: MediaType.dockerConfig,
        size: single.image.config.size,
        digest: single.image.config.digest,
      });
      assert.equal(parsed.config.digest, skopeo.config.digest);
      assert.deepEqual(
        parsed.layers.map((layer) => layer.digest),
        single.diffIds,
      );
      assert.deepEqual(
        parsed.layers.map((layer) => [layer.digest, layer.size]),
        skopeo.layers.map((layer) => [layer.digest, layer.size]),
      );
      for (const layer of parsed.layers) assert.equal(layer.mediaType, MediaType.dockerLayer);
      const image = await store.image(0);
      assert.deepEqual(image.config, parsed.config);
      assert.deepEqual(image.layers, parsed.layers);
      const { digests, strays } = await store.listBlobs();
      assert.deepEqual(
        new Set(digests),
        new Set([manifest.digest, parsed.config.digest, ...parsed.layers.map((layer) => layer.digest)]),
      );
      assert.deepEqual(strays, []);
      await store.close();
    });
  });

  it("writes the manifest with a fixed key order, so its digest is stable", async () => {
    const { archive } = await skopeoDockerArchive();
    const first = await DockerArchiveStore.open(archive);
    const second = await DockerArchiveStore.open(archive);
    const manifest = await first.resolveEntry({});
    assert.deepEqual(await second.resolveEntry({}), manifest);
    const text = (await buffer(await first.fetch(manifest))).toString("utf8");
    assert.deepEqual(Object.keys(JSON.parse(text) as object), [
      "schemaVersion",
      "mediaType",
      "config",
      "layers",
    ]);
    assert.match(
      text,
      /^\{"schemaVersion":2,"mediaType":"[^"]+","config":\{"mediaType":"[^"]+","size":\d+,"digest":"/,
    );
    assert.equal(sha256(Buffer.from(text)), manifest.digest);
    assert.deepEqual(await first.describeBlob(manifest.digest as Digest), manifest);
    assert.deepEqual(await first.resolve({ digest: manifest.digest as Digest }), manifest);
    assert.equal(await first.blobEntry(manifest.digest as Digest), undefined);
  });

  it("resolves names normalised as docker does, @N, and the only entry", async () => {
    const { archive } = await skopeoDockerArchive("lab/debian:bookworm");
    const store = await DockerArchiveStore.open(archive);
    const only = await store.resolveEntry({});
    for (const name of [
      "lab/debian:bookworm",
      "docker.io/lab/debian:bookworm",
      "index.docker.io/lab/debian:bookworm",
    ]) {
      assert.deepEqual(await store.resolveEntry({ name }), only, name);
      assert.deepEqual(await store.resolve({ tag: name }), only, name);
    }
    assert.deepEqual(await store.resolveEntry({ index: 0 }), only);
    assert.deepEqual(await store.resolve({}), only);
    await assert.rejects(
      store.resolveEntry({ name: "lab/debian" }),
      rejectsWith("TAG_NOT_FOUND", archive, "lab/debian"),
    );
    await assert.rejects(store.resolveEntry({ index: 1 }), rejectsWith("TAG_NOT_FOUND", archive, "@1"));
  });

  it("follows skopeo's <id>/layer.tar symlinks to the <diffid>.tar files", async () => {
    const { archive } = await skopeoDockerArchive();
    const direct = await (await DockerArchiveStore.open(archive)).resolveEntry({});
    const viaLinks = await rewrite(archive, async (tree) => {
      const ids = (await readdir(tree, { withFileTypes: true })).filter((entry) => entry.isDirectory());
      const byTarget = new Map<string, string>();
      for (const id of ids) {
        const target = (await sh("readlink", [join(tree, id.name, "layer.tar")])).toString().trim();
        byTarget.set(target.replace("../", ""), `${id.name}/layer.tar`);
      }
      await editManifestJson(tree, (entries) =>
        entries.map((entry) => ({
          ...entry,
          Layers: entry.Layers.map((layer) => byTarget.get(layer) ?? layer),
        })),
      );
    });
    const listing = (await sh("tar", ["-tvf", viaLinks])).toString();
    assert.match(listing, /layer\.tar -> \.\.\//);
    const store = await DockerArchiveStore.open(viaLinks);
    assert.match(JSON.stringify(store.entries), /\/layer\.tar/);
    const manifest = await store.resolveEntry({});
    assert.deepEqual(manifest, direct);
    await fetchImage(store, manifest);
  });

  it("reads a gzip-compressed docker archive through a temp file", async () => {
    const { archive, dir } = await skopeoDockerArchive();
    await sh("gzip", ["-kn", archive]);
    const direct = await (await DockerArchiveStore.open(archive)).resolveEntry({});
    await expectDirUnchanged(dir, async () => {
      const debug: string[] = [];
      const store = await DockerArchiveStore.open(`${archive}.gz`, {
        onDebug: (message) => debug.push(message),
      });
      assert.ok(debug.some((message) => message.startsWith(`decompressing ${archive}.gz (gzip) into `)));
      assert.deepEqual(await store.resolveEntry({}), direct);
      await fetchImage(store, direct);
      await store.close();
    });
  });
});

describe("DockerArchiveStore: other docker save shapes", () => {
  it("reads the Docker ≤ 24 layout: <id>/layer.tar files, VERSION and json", async () => {
    const image = await singleImage();
    const ids = image.diffIds.map((digest) => sha256(Buffer.from(`v1 ${digest}`)).slice(7));
    const files: Record<string, Buffer | string> = {
      [`${hex(image.configDigest)}.json`]: image.config,
      "manifest.json": JSON.stringify([
        {
          Config: `${hex(image.configDigest)}.json`,
          RepoTags: ["busybox:latest"],
          Layers: ids.map((id) => `${id}/layer.tar`),
        },
      ]),
      repositories: JSON.stringify({ busybox: { latest: ids[ids.length - 1] } }),
    };
    ids.forEach((id, i) => {
      files[`${id}/VERSION`] = "1.0";
      files[`${id}/json`] = JSON.stringify({ id });
      files[`${id}/layer.tar`] = image.layers[i] as Buffer;
    });
    const { archive } = await tarOf(files, "legacy.tar");
    const store = await DockerArchiveStore.open(archive);
    assert.deepEqual(await store.tags(), ["busybox:latest"]);
    const manifest = await store.resolveEntry({ name: "docker.io/library/busybox" });
    const parsed = await fetchImage(store, manifest);
    assert.equal(parsed.config.digest, image.configDigest);
    assert.deepEqual(
      parsed.layers.map((layer) => layer.digest),
      image.diffIds,
    );
    const skopeo = (await skopeoRawDigest(`docker-archive:${archive}`)).json as RawManifest;
    assert.equal(skopeo.config.digest, parsed.config.digest);
  });

  it("reads a Docker ≥ 25 hybrid both ways: manifest.json here, index.json with OciArchiveStore", async () => {
    const { archive, image, manifestDigest } = await hybridArchive();
    const docker = await DockerArchiveStore.open(archive);
    assert.deepEqual(await docker.tags(), ["lab/hybrid:1"]);
    const manifest = await docker.resolveEntry({ name: "lab/hybrid:1" });
    const parsed = await fetchImage(docker, manifest);
    assert.equal(parsed.config.digest, image.configDigest);
    assert.deepEqual(
      parsed.layers.map((layer) => [layer.mediaType, layer.digest]),
      image.diffIds.map((digest) => [MediaType.dockerLayer, digest]),
    );
    const skopeo = (await skopeoRawDigest(`docker-archive:${archive}`)).json as RawManifest;
    assert.deepEqual(
      skopeo.layers.map((layer) => layer.digest),
      parsed.layers.map((layer) => layer.digest),
    );

    const oci = await OciArchiveStore.open(archive);
    for (const tag of ["1", "docker.io/lab/hybrid:1"]) {
      assert.equal((await oci.resolve({ tag })).digest, manifestDigest, tag);
    }
    assert.equal((await skopeoRawDigest(`oci-archive:${archive}:1`)).digest, manifestDigest);
  });

  it("names gzip layers by their blobs/sha256 name, and hashes compressed layers stored elsewhere", async () => {
    const { archive, image, layerDigests } = await hybridArchive({ layers: "gzip" });
    const store = await DockerArchiveStore.open(archive);
    const parsed = await fetchImage(store, await store.resolveEntry({}));
    assert.deepEqual(
      parsed.layers.map((layer) => [layer.mediaType, layer.digest, layer.size]),
      image.gzipLayers.map((bytes, i) => [MediaType.dockerLayerGzip, layerDigests[i], bytes.length]),
    );
    const moved = await rewrite(archive, async (tree) => {
      await mkdir(join(tree, "layers"));
      for (const [i, bytes] of image.gzipLayers.entries())
        await writeFile(join(tree, "layers", `${i}.tar.gz`), bytes);
      await editManifestJson(tree, (entries) =>
        entries.map((entry) => ({ ...entry, Layers: entry.Layers.map((_, i) => `layers/${i}.tar.gz`) })),
      );
    });
    const hashed = await DockerArchiveStore.open(moved);
    const again = await fetchImage(hashed, await hashed.resolveEntry({}));
    assert.deepEqual(again.layers, parsed.layers);
    const entry = await hashed.blobEntry(layerDigests[0] as Digest);
    assert.ok(entry);
    assert.equal(entry.size, image.gzipLayers[0]?.length);
  });

  it("lists every image, picks by name or @N, and asks when several could be meant", async () => {
    const { archive } = await skopeoDockerArchive();
    const many = await rewrite(archive, (tree) =>
      editManifestJson(tree, ([entry]) => [
        { ...entry, RepoTags: ["lab/a:1", "busybox:latest"] },
        { ...entry, RepoTags: ["lab/b:2"] },
        { ...entry, RepoTags: null },
        { ...entry, RepoTags: ["lab/b:2"] },
      ]),
    );
    const store = await DockerArchiveStore.open(many);
    assert.deepEqual(await store.tags(), ["lab/a:1", "busybox:latest", "lab/b:2"]);
    const first = await store.resolveEntry({ name: "busybox" });
    assert.deepEqual(await store.resolveEntry({ index: 2 }), first, "same files, same synthesised manifest");
    assert.equal((await store.images()).length, 4);
    await assert.rejects(
      store.resolveEntry({}),
      rejectsWith("TAG_NOT_FOUND", many, "lab/a:1", "busybox:latest", "@1: lab/b:2", "@2: untagged"),
    );
    await assert.rejects(store.resolveEntry({ name: "lab/b:2" }), rejectsWith("AMBIGUOUS_TAG", "@1", "@3"));
    await assert.rejects(
      store.resolveEntry({ name: "lab/c:3" }),
      rejectsWith("TAG_NOT_FOUND", many, "lab/c:3"),
    );
    await assert.rejects(store.resolveEntry({ index: 4 }), rejectsWith("TAG_NOT_FOUND", "@4", "4 images"));
    await assert.rejects(store.resolveEntry({ name: "Not A Ref" }), rejectsWith("INVALID_REFERENCE"));
  });
});

describe("DockerArchiveStore: broken archives", () => {
  it("refuses a manifest.json that is not an array, or has no manifest.json, naming the archive", async () => {
    const notArray = await tarOf({ "manifest.json": JSON.stringify({ Config: "x", Layers: [] }) });
    await assert.rejects(
      DockerArchiveStore.open(notArray.archive),
      rejectsWith("INVALID_DOCUMENT", notArray.archive, "manifest.json", "array"),
    );
    const badEntry = await tarOf({ "manifest.json": JSON.stringify([{ Config: 3, Layers: [] }]) });
    await assert.rejects(
      DockerArchiveStore.open(badEntry.archive),
      rejectsWith("INVALID_DOCUMENT", badEntry.archive, "Config"),
    );
    const { archive: oci } = await hybridArchive();
    const noManifest = await rewrite(oci, async (tree) => {
      await sh("rm", [join(tree, "manifest.json")]);
    });
    await assert.rejects(DockerArchiveStore.open(noManifest), (error) => {
      assert.ok(isRociError(error, "INVALID_LAYOUT") && error.message.includes(noManifest));
      assert.match(error.hint ?? "", /oci-archive:/);
      return true;
    });
  });

  it("refuses a layer count that differs from the config's diff_ids, naming archive and entry", async () => {
    const { archive } = await skopeoDockerArchive();
    const short = await rewrite(archive, (tree) =>
      editManifestJson(tree, (entries) =>
        entries.map((entry) => ({ ...entry, Layers: entry.Layers.slice(1) })),
      ),
    );
    const store = await DockerArchiveStore.open(short);
    await assert.rejects(
      store.resolveEntry({}),
      rejectsWith("INVALID_DOCUMENT", short, "manifest.json[0]", "lists 1 layers", "2 diff_ids"),
    );
  });

  it("reports a layer file manifest.json names but the archive lacks as BLOB_MISSING", async () => {
    const { archive } = await skopeoDockerArchive();
    const missing = await rewrite(archive, async (tree) => {
      const [entry] = JSON.parse(await readFile(join(tree, "manifest.json"), "utf8")) as DockerSaveEntry[];
      await sh("rm", [join(tree, entry?.Layers[1] as string)]);
    });
    const store = await DockerArchiveStore.open(missing);
    await assert.rejects(
      store.resolveEntry({}),
      rejectsWith("BLOB_MISSING", missing, "manifest.json[0].Layers[1]"),
    );
  });

  it("verifies layers against their diff_ids: a flipped byte inside the tar is DIGEST_MISMATCH", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive } = await skopeoDockerArchive();
    const store = await DockerArchiveStore.open(archive);
    const image = await store.image(0);
    const layer = image.layers[0] as Descriptor;
    const entry = await store.blobEntry(layer.digest as Digest);
    assert.ok(entry);
    await flipByte(archive, entry.offset + 600);
    const reopened = await DockerArchiveStore.open(archive);
    const manifest = await reopened.resolveEntry({});
    assert.equal(manifest.digest, image.manifest.digest, "plain layers are named by diff_id, not hashed");
    await assert.rejects(
      buffer(await reopened.fetch(layer)),
      rejectsWith("DIGEST_MISMATCH", single.diffIds[0] as string),
    );
    await assert.rejects(
      reopened.fetch({ ...image.config, digest: `sha256:${"0".repeat(64)}` }),
      rejectsWith("BLOB_MISSING", archive),
    );
    await assert.rejects(
      reopened.describeBlob(image.config.digest as Digest),
      rejectsWith("INVALID_DOCUMENT"),
    );
  });
});

describe("DockerArchiveStore: read-only inputs", () => {
  it("reads skopeo's docker archive and a hybrid on a read-only bind mount, leaving them unchanged", async () => {
    const skopeo = await skopeoDockerArchive();
    const hybrid = await hybridArchive();
    for (const { archive, dir } of [skopeo, hybrid]) {
      await expectDirUnchanged(dir, () =>
        withReadOnlyBindMount(archive, async (mounted) => {
          const store = await DockerArchiveStore.open(mounted);
          await fetchImage(store, await store.resolveEntry({}));
          if (archive === hybrid.archive) {
            const oci = await OciArchiveStore.open(mounted);
            assert.equal((await oci.resolve({ tag: "1" })).digest, hybrid.manifestDigest);
          }
        }),
      );
    }
  });
});
