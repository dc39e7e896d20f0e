import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isRociError } from "../errors.ts";
import type { Descriptor } from "../spec/documents.ts";
import { lookupTag, tagsOf } from "./tag-lookup.ts";

const entry = (n: number, annotations?: Record<string, string>): Descriptor => ({
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: 100 + n,
  ...(annotations ? { annotations } : {}),
});
const ref = (name: string) => ({ "org.opencontainers.image.ref.name": name });
const ctr = (name: string) => ({ "io.containerd.image.name": name });

describe("tag lookup (DESIGN.md resolution rules)", () => {
  it("finds ref.name first, exactly", () => {
    const entries = [entry(1, ctr("v1")), entry(2, ref("v1"))];
    assert.equal(lookupTag(entries, "v1", "L").digest, entries[1]!.digest);
  });

  it("then the containerd image name, exactly", () => {
    const entries = [entry(1, ref("other")), entry(2, ctr("docker.io/library/app:1"))];
    assert.equal(lookupTag(entries, "docker.io/library/app:1", "L").digest, entries[1]!.digest);
  });

  it("then a full reference in either annotation whose tag part is the tag", () => {
    const entries = [entry(1, ref("example.com/team/app:1.0")), entry(2, ctr("localhost:5000/x/y:2.0"))];
    assert.equal(lookupTag(entries, "1.0", "L").digest, entries[0]!.digest);
    assert.equal(lookupTag(entries, "2.0", "L").digest, entries[1]!.digest);
    // The port of a registry is not a tag.
    assert.throws(() => lookupTag([entry(3, ref("localhost:5000/x"))], "5000/x", "L"));
  });

  it("defaults to latest", () => {
    const entries = [entry(1, ref("v1")), entry(2, ref("latest"))];
    assert.equal(lookupTag(entries, undefined, "L").digest, entries[1]!.digest);
  });

  it("without latest, takes the only entry, as buildx does", () => {
    const entries = [entry(1, ref("v1"))];
    assert.equal(lookupTag(entries, undefined, "L").digest, entries[0]!.digest);
    assert.equal(lookupTag([entry(2)], undefined, "L").digest, entry(2).digest);
  });

  it("does not fall back to the only entry when a tag was named", () => {
    assert.throws(
      () => lookupTag([entry(1, ref("v1"))], "v2", "L"),
      (error) => isRociError(error, "TAG_NOT_FOUND") && /available tags: v1/.test(error.message),
    );
  });

  it("lists tags and untagged entries when nothing matches", () => {
    assert.throws(
      () => lookupTag([entry(1, ref("a")), entry(2, ref("b")), entry(3)], undefined, "L"),
      (error) =>
        isRociError(error, "TAG_NOT_FOUND") &&
        /a, b/.test(error.message) &&
        /untagged: sha256:333/.test(error.message),
    );
  });

  it("refuses a tag that names different digests, listing them", () => {
    const entries = [entry(1, ref("dup")), entry(2, ref("dup"))];
    assert.throws(
      () => lookupTag(entries, "dup", "L"),
      (error) =>
        isRociError(error, "AMBIGUOUS_TAG") &&
        error.message.includes(entries[0]!.digest) &&
        error.message.includes(entries[1]!.digest),
    );
  });

  it("accepts a tag repeated on the same digest", () => {
    const entries = [entry(1, ref("dup")), entry(1, ref("dup"))];
    assert.equal(lookupTag(entries, "dup", "L").digest, entries[0]!.digest);
  });

  it("lists every name once, in index order", () => {
    assert.deepEqual(tagsOf([entry(1, { ...ref("a"), ...ctr("x/y:a") }), entry(2, ref("a")), entry(3)]), [
      "a",
      "x/y:a",
    ]);
  });
});
