import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isRociError } from "../errors.ts";
import { parseConfig, parseIndex, parseLayoutHeader, parseManifest, sniffMediaType } from "./documents.ts";

const bytes = (value: unknown) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const digest = `sha256:${"a".repeat(64)}`;
const descriptor = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: 3 };

describe("documents", () => {
  it("keep the exact bytes beside the parsed value", () => {
    const raw = bytes(`{ "schemaVersion": 2,  "manifests": [] }`);
    const parsed = parseIndex(raw, "index.json");
    assert.equal(parsed.raw, raw);
    assert.deepEqual(parsed.value.manifests, []);
  });

  it("carry unknown fields and unknown media types instead of rejecting them", () => {
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { ...descriptor, mediaType: "application/x-unknown+json" },
      layers: [{ ...descriptor, mediaType: "application/x-custom", future: true }],
      futureField: 1,
    };
    const parsed = parseManifest(bytes(manifest), "m").value as Record<string, unknown>;
    assert.equal(parsed.futureField, 1);
  });

  it("understand Docker schema 2 media types and refuse schema 1 clearly", () => {
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: { ...descriptor, mediaType: "application/vnd.docker.container.image.v1+json" },
      layers: [{ ...descriptor, mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip" }],
    };
    assert.equal(parseManifest(bytes(manifest), "m").value.layers.length, 1);
    assert.throws(
      () =>
        parseManifest(
          bytes({ schemaVersion: 1, mediaType: "application/vnd.docker.distribution.manifest.v1+json" }),
          "m",
        ),
      (error) => isRociError(error, "INVALID_DOCUMENT") && /schema 1/.test(error.message),
    );
  });

  it("report where a document is invalid", () => {
    const bad = { schemaVersion: 2, manifests: [{ mediaType: "x/y", digest: "sha256:../../etc", size: 1 }] };
    assert.throws(
      () => parseIndex(bytes(bad), "index.json"),
      (error) =>
        isRociError(error, "INVALID_DOCUMENT") && /index\.json.*manifests\.0\.digest/.test(error.message),
    );
    assert.throws(
      () => parseIndex(bytes({ schemaVersion: 2, manifests: [{ ...descriptor, size: -1 }] }), "i"),
      (error) => isRociError(error, "INVALID_DOCUMENT"),
    );
  });

  it("refuse JSON over the size cap before parsing it", () => {
    const big = bytes(" ".repeat(5 * 1024 * 1024));
    assert.throws(
      () => parseIndex(big, "index.json"),
      (error) => isRociError(error, "DOCUMENT_TOO_LARGE"),
    );
  });

  it("say so when bytes are not JSON or not UTF-8", () => {
    assert.throws(
      () => parseIndex(bytes("{nope"), "index.json"),
      (error) => isRociError(error, "INVALID_DOCUMENT"),
    );
    assert.throws(
      () => parseIndex(new Uint8Array([0xff, 0xfe]), "index.json"),
      (error) => isRociError(error, "INVALID_DOCUMENT") && /UTF-8/.test(error.message),
    );
  });

  it("validate configs: architecture, os and rootfs are required", () => {
    const config = { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [digest] } };
    assert.equal(parseConfig(bytes(config), "c").value.os, "linux");
    assert.throws(
      () => parseConfig(bytes({ os: "linux" }), "c"),
      (error) => isRociError(error, "INVALID_DOCUMENT"),
    );
  });

  it("read the layout header", () => {
    assert.equal(
      parseLayoutHeader(bytes({ imageLayoutVersion: "1.0.0" }), "oci-layout").imageLayoutVersion,
      "1.0.0",
    );
    assert.throws(
      () => parseLayoutHeader(bytes({}), "oci-layout"),
      (error) => isRociError(error, "INVALID_DOCUMENT"),
    );
  });

  it("sniff what a blob is from its own mediaType or its shape", () => {
    assert.equal(
      sniffMediaType({ schemaVersion: 2, manifests: [] }),
      "application/vnd.oci.image.index.v1+json",
    );
    assert.equal(sniffMediaType({ config: {}, layers: [] }), "application/vnd.oci.image.manifest.v1+json");
    assert.equal(
      sniffMediaType({
        mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
        manifests: [],
      }),
      "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    assert.equal(sniffMediaType([1, 2]), undefined);
    assert.equal(sniffMediaType({ architecture: "amd64" }), undefined);
  });
});
