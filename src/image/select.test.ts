import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isRociError } from "../errors.ts";
import { parsePlatform } from "../spec/platform.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import { copyFixture, fixtures } from "../test-support/fixtures.ts";
import { addJsonBlob, readIndex, tagged, writeIndex } from "../test-support/layout-edit.ts";
import { selectImage } from "./select.ts";

async function select(path: string, tag: string, platform?: string, strict = false) {
  const reader = await LayoutReader.open(path);
  const root = await reader.resolve({ tag });
  return selectImage(reader, root, { platform: platform ? parsePlatform(platform) : undefined, strict });
}

describe("selecting an image by platform", () => {
  it("narrows an index to the wanted platform, normalised as containerd does", async () => {
    const { multi } = (await fixtures()).layouts;
    const amd = multi.platforms["linux/amd64"].manifest.digest;
    const arm = multi.platforms["linux/arm64/v8"].manifest.digest;
    assert.equal((await select(multi.path, "multi", "linux/amd64")).descriptor.digest, amd);
    assert.equal((await select(multi.path, "multi", "linux/arm64")).descriptor.digest, arm);
    assert.equal((await select(multi.path, "multi", "linux/aarch64")).descriptor.digest, arm);
    assert.equal((await select(multi.path, "multi", "linux/x86_64")).descriptor.digest, amd);
  });

  it("goes through nested indexes, recording each one passed", async () => {
    const { nested } = (await fixtures()).layouts;
    const selected = await select(nested.path, "nested", "linux/arm64/v8");
    assert.equal(selected.descriptor.digest, nested.platforms["linux/arm64/v8"].manifest.digest);
    assert.deepEqual(
      selected.indexes.map((step) => step.descriptor.digest),
      [nested.outer.digest, nested.inner.digest],
    );
  });

  it("says which platforms exist when the wanted one does not", async () => {
    const { multi } = (await fixtures()).layouts;
    await assert.rejects(
      select(multi.path, "multi", "linux/s390x"),
      (error) =>
        isRociError(error, "PLATFORM_NOT_FOUND") &&
        /linux\/amd64/.test(error.message) &&
        /arm64/.test(error.message),
    );
  });

  it("takes a lone manifest as it is without --platform, and checks it with one", async () => {
    const { single } = (await fixtures()).layouts;
    assert.equal((await select(single.path, "v1")).descriptor.digest, single.refs.v1.digest);
    assert.equal((await select(single.path, "v1", "linux/amd64")).descriptor.digest, single.refs.v1.digest);
    await assert.rejects(select(single.path, "v1", "linux/arm64"), (error) =>
      isRociError(error, "PLATFORM_NOT_FOUND"),
    );
  });

  it("never chooses an attestation, and judges entries without a platform field by their config", async () => {
    const copy = await copyFixture("multi");
    const { multi } = (await fixtures()).layouts;
    const amd = multi.platforms["linux/amd64"].manifest;
    const arm = multi.platforms["linux/arm64/v8"].manifest;
    const index = await addJsonBlob(
      copy,
      {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          // An attestation first: a careless matcher on "first entry" would take it.
          { ...arm, platform: { os: "unknown", architecture: "unknown" } },
          { ...arm, annotations: { "vnd.docker.reference.type": "attestation-manifest" } },
          { ...amd },
        ],
      },
      "application/vnd.oci.image.index.v1+json",
    );
    await writeIndex(copy, [...(await readIndex(copy)).manifests, tagged(index, "attested")]);
    assert.equal((await select(copy, "attested", "linux/amd64")).descriptor.digest, amd.digest);
    await assert.rejects(select(copy, "attested", "linux/arm64"), (error) =>
      isRociError(error, "PLATFORM_NOT_FOUND"),
    );
  });

  it("with strict matching, refuses containerd's fallbacks", async () => {
    const copy = await copyFixture("multi");
    const { multi } = (await fixtures()).layouts;
    const amd = multi.platforms["linux/amd64"].manifest;
    const index = await addJsonBlob(
      copy,
      {
        schemaVersion: 2,
        manifests: [{ ...amd, platform: { os: "linux", architecture: "arm", variant: "v6" } }],
      },
      "application/vnd.oci.image.index.v1+json",
    );
    await writeIndex(copy, [tagged(index, "armv6")]);
    assert.equal((await select(copy, "armv6", "linux/arm/v7")).descriptor.digest, amd.digest);
    await assert.rejects(select(copy, "armv6", "linux/arm/v7", true), (error) =>
      isRociError(error, "PLATFORM_NOT_FOUND"),
    );
  });
});
