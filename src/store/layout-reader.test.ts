import assert from "node:assert/strict";
import { rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import type { Digest } from "../digest/digest.ts";
import { digestOf } from "../digest/hash.ts";
import { isRociError } from "../errors.ts";
import { copyFixture, fixtures } from "../test-support/fixtures.ts";
import { addJsonBlob, readIndex, tagged, writeIndex } from "../test-support/layout-edit.ts";
import { LayoutReader } from "./layout-reader.ts";

const open = (path: string, warnings: string[] = []) =>
  LayoutReader.open(path, { onWarning: (message) => warnings.push(message) });
const d = (digest: string) => digest as Digest;

describe("LayoutReader: opening", () => {
  it("opens a layout made by umoci and one whose final writer was skopeo", async () => {
    const { layouts } = await fixtures();
    assert.equal((await open(layouts.single.path)).location, layouts.single.path);
    assert.equal((await open(layouts.multi.path)).location, layouts.multi.path);
  });

  it("refuses a file, a missing path, a missing oci-layout and an unknown layout version", async () => {
    const { layouts } = await fixtures();
    const cases: Array<[string, string]> = [
      [layouts["is-a-file"].path, "INVALID_LAYOUT"],
      [join(layouts.single.path, "does-not-exist"), "NOT_FOUND"],
      [layouts["no-oci-layout"].path, "INVALID_LAYOUT"],
      [layouts["bad-version"].path, "INVALID_LAYOUT"],
    ];
    for (const [path, code] of cases) {
      await assert.rejects(
        open(path),
        (error) => isRociError(error) && error.code === code && error.message.includes(path),
      );
    }
  });

  it("reports index.json that is not JSON, too large, or not an index", async () => {
    const { layouts } = await fixtures();
    const cases: Array<[string, string]> = [
      [layouts["index-bad-json"].path, "INVALID_DOCUMENT"],
      [layouts["index-too-large"].path, "DOCUMENT_TOO_LARGE"],
      [layouts["index-not-index"].path, "INVALID_DOCUMENT"],
    ];
    for (const [path, code] of cases) {
      await assert.rejects(
        (await open(path)).resolve({}),
        (error) => isRociError(error) && error.code === code,
      );
    }
  });
});

describe("LayoutReader: resolving references (DESIGN.md)", () => {
  it("resolves a tag written by umoci", async () => {
    const { single } = (await fixtures()).layouts;
    assert.equal((await (await open(single.path)).resolve({ tag: "v1" })).digest, single.refs.v1.digest);
  });

  it("defaults to latest", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    assert.equal((await (await open(layout.path)).resolve({})).digest, layout.refs.latest.digest);
  });

  it("without a latest tag, takes the only entry", async () => {
    const { single } = (await fixtures()).layouts;
    assert.equal((await (await open(single.path)).resolve({})).digest, single.refs.v1.digest);
  });

  it("resolves zstd and Docker schema 2 entries like any other", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    const reader = await open(layout.path);
    const zstd = await reader.resolve({ tag: "zstd" });
    const docker = await reader.resolve({ tag: "docker" });
    assert.equal(zstd.digest, layout.refs.zstd.digest);
    assert.equal(docker.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
  });

  it("follows the lookup order: ref.name, containerd name, then the tag part of a full reference", async () => {
    const { names } = (await fixtures()).layouts;
    const reader = await open(names.path);
    for (const [tag, digest] of Object.entries(names.lookups)) {
      assert.equal((await reader.resolve({ tag })).digest, digest, `tag ${tag}`);
    }
  });

  it("refuses an ambiguous tag and lists the candidates", async () => {
    const { names } = (await fixtures()).layouts;
    await assert.rejects(
      (await open(names.path)).resolve({ tag: names.ambiguous.tag }),
      (error) =>
        isRociError(error, "AMBIGUOUS_TAG") &&
        names.ambiguous.digests.every((digest) => error.message.includes(digest)),
    );
  });

  it("refuses an unknown tag and lists what there is", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    await assert.rejects(
      (await open(layout.path)).resolve({ tag: "nope" }),
      (error) =>
        isRociError(error, "TAG_NOT_FOUND") && /base/.test(error.message) && /untagged/.test(error.message),
    );
  });

  it("lets a digest win, even for blobs index.json does not list (a platform manifest)", async () => {
    const { multi } = (await fixtures()).layouts;
    const arm = multi.platforms["linux/arm64/v8"].manifest;
    const resolved = await (await open(multi.path)).resolve({ digest: d(arm.digest) });
    assert.deepEqual(resolved, { mediaType: arm.mediaType, digest: arm.digest, size: arm.size });
  });

  it("pins untagged entries by digest", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    const untagged = layout.untagged[0]!;
    assert.equal(
      (await (await open(layout.path)).resolve({ digest: d(untagged.digest) })).digest,
      untagged.digest,
    );
  });

  it("does not read index.json at all when given only a digest", async () => {
    const copy = await copyFixture("single");
    const { single } = (await fixtures()).layouts;
    await rm(join(copy, "index.json"));
    assert.equal(
      (await (await open(copy)).resolve({ digest: d(single.refs.v1.digest) })).digest,
      single.refs.v1.digest,
    );
    await writeFile(join(copy, "index.json"), "{ torn");
    assert.equal(
      (await (await open(copy)).resolve({ digest: d(single.refs.v1.digest) })).digest,
      single.refs.v1.digest,
    );
  });

  it("with a tag and a digest, uses the digest and warns when the tag names something else", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    const warnings: string[] = [];
    const resolved = await (await open(layout.path, warnings)).resolve({
      tag: "base",
      digest: d(layout.refs.app.digest),
    });
    assert.equal(resolved.digest, layout.refs.app.digest);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /tag "base" names sha256:/);
  });

  it("refuses a digest that names a blob which is not a manifest or an index", async () => {
    const { single } = (await fixtures()).layouts;
    await assert.rejects(
      (await open(single.path)).resolve({ digest: d(single.image.config.digest) }),
      (error) =>
        isRociError(error, "INVALID_DOCUMENT") && /not an image manifest or index/.test(error.message),
    );
  });

  it("reports a pinned digest whose blob is absent", async () => {
    const { single } = (await fixtures()).layouts;
    await assert.rejects(
      (await open(single.path)).resolve({ digest: d(`sha256:${"0".repeat(64)}`) }),
      (error) => isRociError(error, "BLOB_MISSING"),
    );
  });

  it("reads layouts in directories whose names contain @ and :", async () => {
    const { weird } = (await fixtures()).layouts;
    assert.match(weird.path, /@.*:/);
    assert.equal((await (await open(weird.path)).resolve({ tag: "v1" })).digest, weird.refs.v1.digest);
  });

  it("rides out an index.json that is being rewritten in place (a torn read is retried)", async () => {
    const copy = await copyFixture("single");
    const good = JSON.stringify(await readIndex(copy));
    await writeFile(join(copy, "index.json"), good.slice(0, 20));
    const reader = await open(copy);
    const pending = reader.resolve({ tag: "v1" });
    await writeFile(join(copy, "index.json"), good);
    assert.equal((await pending).mediaType, "application/vnd.oci.image.manifest.v1+json");
  });
});

describe("LayoutReader: fetching blobs", () => {
  it("streams verified bytes, following relative symlinks as Bazel's rules_oci writes them", async () => {
    const { symlinked } = (await fixtures()).layouts;
    const reader = await open(symlinked.path);
    const layer = (await fixtures()).layouts.single.image.layers[0]!;
    const bytes = await buffer(await reader.fetch(layer));
    assert.equal(digestOf(bytes), layer.digest);
  });

  it("fails closed on a corrupt blob: the stream errors instead of ending", async () => {
    const corrupt = (await fixtures()).layouts["corrupt-blob"];
    const reader = await open(corrupt.path);
    await assert.rejects(buffer(await reader.fetch(corrupt.corrupt)), (error) =>
      isRociError(error, "DIGEST_MISMATCH"),
    );
  });

  it("fails before streaming when the size alone is wrong", async () => {
    const { single } = (await fixtures()).layouts;
    const reader = await open(single.path);
    const layer = single.image.layers[0]!;
    await assert.rejects(reader.fetch({ ...layer, size: layer.size + 1 }), (error) =>
      isRociError(error, "SIZE_MISMATCH"),
    );
  });

  it("reports a missing blob as BLOB_MISSING naming digest and layout", async () => {
    const missing = (await fixtures()).layouts["missing-blob"];
    await assert.rejects(
      (await open(missing.path)).fetch(missing.missing),
      (error) => isRociError(error, "BLOB_MISSING") && error.message.includes(missing.missing.digest),
    );
  });

  it("never turns an unverifiable digest into a path", async () => {
    const { single } = (await fixtures()).layouts;
    const reader = await open(single.path);
    assert.throws(
      () => reader.blobPath("md5:abc"),
      (error) => isRociError(error, "UNSUPPORTED_DIGEST"),
    );
    await assert.rejects(
      reader.fetch({ mediaType: "x/y", digest: "sha256:../../etc/passwd", size: 1 }),
      (error) => isRociError(error, "INVALID_DIGEST"),
    );
  });

  it("lists blobs, and names files under blobs/ that are not digests", async () => {
    const copy = await copyFixture("single");
    await writeFile(join(copy, "blobs", "sha256", "not-a-digest"), "x");
    await symlink("nowhere", join(copy, "blobs", "sha256", "UPPERCASE"));
    const { digests, strays } = await (await open(copy)).listBlobs();
    const { single } = (await fixtures()).layouts;
    assert.ok(digests.includes(d(single.refs.v1.digest)));
    assert.deepEqual(strays.sort(), ["blobs/sha256/UPPERCASE", "blobs/sha256/not-a-digest"]);
  });

  it("carries index.json entries of unknown media types", async () => {
    const copy = await copyFixture("single");
    const index = await readIndex(copy);
    const artifact = await addJsonBlob(copy, { hello: "world" }, "application/vnd.example.thing+json");
    await writeIndex(copy, [...index.manifests, tagged(artifact, "thing")]);
    const reader = await open(copy);
    assert.deepEqual(await reader.tags(), ["v1", "thing"]);
    assert.equal((await reader.resolve({ tag: "thing" })).mediaType, "application/vnd.example.thing+json");
  });
});
