import assert from "node:assert/strict";
import { mkdir, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LayoutReader } from "../store/layout-reader.ts";
import { copyFixture, fixtures } from "../test-support/fixtures.ts";
import { addBlob, addJsonBlob, readIndex, tagged, writeIndex } from "../test-support/layout-edit.ts";
import { verifyLayout } from "./verify.ts";

async function verifyAll(path: string) {
  const reader = await LayoutReader.open(path);
  return verifyLayout(reader, (await reader.index()).manifests, { reportUnreferenced: true });
}

const kinds = (report: Awaited<ReturnType<typeof verifyAll>>) =>
  report.problems.map((problem) => `${problem.severity} ${problem.kind} ${problem.subject}`);

describe("verify", () => {
  it("passes a clean layout, hashing every blob once even when images share them", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    const report = await verifyAll(layout.path);
    assert.equal(report.ok, true, kinds(report).join("\n"));
    assert.deepEqual(
      report.problems.filter((problem) => problem.severity === "error"),
      [],
    );
    assert.ok(report.verifiedBlobs > 5);
  });

  it("passes nested indexes and symlinked blobs", async () => {
    const { nested, symlinked } = (await fixtures()).layouts;
    assert.equal((await verifyAll(nested.path)).ok, true);
    assert.equal((await verifyAll(symlinked.path)).ok, true);
  });

  it("reports a missing blob as an error naming it", async () => {
    const missing = (await fixtures()).layouts["missing-blob"];
    const report = await verifyAll(missing.path);
    assert.equal(report.ok, false);
    assert.deepEqual(kinds(report), [`error missing ${missing.missing.digest}`]);
  });

  it("reports a corrupt blob, and a truncated one, as corrupt", async () => {
    const corrupt = (await fixtures()).layouts["corrupt-blob"];
    assert.deepEqual(kinds(await verifyAll(corrupt.path)), [`error corrupt ${corrupt.corrupt.digest}`]);

    const copy = await copyFixture("single");
    const layer = (await fixtures()).layouts.single.image.layers[0]!;
    await truncate(join(copy, "blobs", "sha256", layer.digest.slice(7)), 10);
    const report = await verifyAll(copy);
    assert.deepEqual(kinds(report), [`error corrupt ${layer.digest}`]);
    assert.equal(report.problems[0]!.code, "SIZE_MISMATCH");
  });

  it("does not follow a corrupt manifest: its children are neither checked nor counted as referenced", async () => {
    const copy = await copyFixture("single");
    const { single } = (await fixtures()).layouts;
    await writeFile(join(copy, "blobs", "sha256", single.refs.v1.digest.slice(7)), "{}");
    const report = await verifyAll(copy);
    assert.equal(report.ok, false);
    assert.ok(kinds(report).includes(`error corrupt ${single.refs.v1.digest}`));
    assert.ok(report.problems.some((problem) => problem.kind === "unreferenced"));
  });

  it("reports an invalid document with the field at fault", async () => {
    const copy = await copyFixture("single");
    const bad = await addJsonBlob(
      copy,
      { schemaVersion: 2, config: {}, layers: [] },
      "application/vnd.oci.image.manifest.v1+json",
    );
    await writeIndex(copy, [tagged(bad, "bad")]);
    const report = await verifyAll(copy);
    const invalid = report.problems.find((problem) => problem.kind === "invalid");
    assert.ok(invalid);
    assert.match(invalid.message, /config\.mediaType/);
  });

  it("allows absent non-distributable layers, as a warning", async () => {
    const copy = await copyFixture("single");
    const { single } = (await fixtures()).layouts;
    const config = single.image.config;
    const foreign = {
      mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      digest: `sha256:${"f".repeat(64)}`,
      size: 1234,
      urls: ["https://example.invalid/layer.tar.gz"],
    };
    const manifest = await addJsonBlob(
      copy,
      {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config,
        layers: [foreign],
      },
      "application/vnd.oci.image.manifest.v1+json",
    );
    await writeIndex(copy, [tagged(manifest, "foreign")]);
    const report = await verifyAll(copy);
    assert.equal(report.ok, true);
    assert.ok(kinds(report).includes(`warning missing ${foreign.digest}`));
  });

  it("lists unreferenced blobs and stray files as warnings when verifying a whole layout", async () => {
    const copy = await copyFixture("single");
    const orphan = await addBlob(copy, "nobody points at me", "application/octet-stream");
    await mkdir(join(copy, "blobs", "sha256", "ingest-leftover"));
    const report = await verifyAll(copy);
    assert.equal(report.ok, true);
    assert.deepEqual(kinds(report).sort(), [
      "warning stray blobs/sha256/ingest-leftover",
      `warning unreferenced ${orphan.digest}`,
    ]);
  });

  it("checks only what one image reaches when given one", async () => {
    const { tagged: layout } = (await fixtures()).layouts;
    const reader = await LayoutReader.open(layout.path);
    const base = await reader.resolve({ tag: "base" });
    const report = await verifyLayout(reader, [base]);
    assert.equal(report.ok, true);
    assert.equal(report.verifiedBlobs, 2 + layout.images.base.layers.length);
  });

  it("reports entries of unknown media types by checking their bytes only", async () => {
    const copy = await copyFixture("single");
    const artifact = await addJsonBlob(copy, { anything: true }, "application/vnd.example+json");
    const index = await readIndex(copy);
    await writeIndex(copy, [...index.manifests, artifact]);
    assert.equal((await verifyAll(copy)).ok, true);
  });
});
