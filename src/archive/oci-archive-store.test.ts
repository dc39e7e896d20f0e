import assert from "node:assert/strict";
import { cp, link, mkdir, readdir, readFile, rename, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { copyImage } from "../copy/copy.ts";
import type { Digest } from "../digest/digest.ts";
import { isRociError, type RociErrorCode } from "../errors.ts";
import type { Descriptor } from "../spec/documents.ts";
import { isIndexType, isManifestType } from "../spec/media-types.ts";
import { LayoutReader } from "../store/layout-reader.ts";
import { LayoutStore } from "../store/layout-store.ts";
import type { ReadOnlyTarget } from "../store/store.ts";
import {
  expectDirUnchanged,
  flipByte,
  handTar,
  layoutFiles,
  put,
  scratch,
  sh,
  sha256,
  skopeoCopy,
  skopeoRawDigest,
} from "../test-support/archives.ts";
import { fixtures } from "../test-support/fixtures.ts";
import { withReadOnlyBindMount } from "../test-support/readonly.ts";
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

/** Fetches (and so verifies) every blob reachable from `root`; returns their digests. */
async function fetchAll(store: ReadOnlyTarget, root: Descriptor): Promise<Set<string>> {
  const seen = new Set<string>();
  const visit = async (descriptor: Descriptor): Promise<void> => {
    if (seen.has(descriptor.digest)) return;
    seen.add(descriptor.digest);
    const bytes = await buffer(await store.fetch(descriptor));
    if (isIndexType(descriptor.mediaType)) {
      for (const child of (JSON.parse(bytes.toString("utf8")) as { manifests: Descriptor[] }).manifests) {
        await visit(child);
      }
    } else if (isManifestType(descriptor.mediaType)) {
      const manifest = JSON.parse(bytes.toString("utf8")) as { config: Descriptor; layers: Descriptor[] };
      await visit(manifest.config);
      for (const layer of manifest.layers) await visit(layer);
    }
  };
  await visit(root);
  return seen;
}

/** A tar of a layout directory: `tar -C layout -cf out .` or naming its top-level entries. */
async function tarLayout(layout: string, out: string, style: "dot" | "named" = "dot"): Promise<string> {
  const names = style === "dot" ? ["."] : (await readdir(layout)).sort();
  await sh("tar", ["-C", layout, "-cf", out, ...names]);
  return out;
}

async function skopeoArchive(): Promise<{ archive: string; dir: string }> {
  const { single } = (await fixtures()).layouts;
  const dir = await scratch();
  const archive = join(dir, "single.tar");
  await skopeoCopy(`oci:${single.path}:v1`, `oci-archive:${archive}:v1`);
  return { archive, dir };
}

describe("OciArchiveStore: archives written by skopeo", () => {
  it("resolves skopeo's oci-archive to the digest skopeo reports, and every blob verifies", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive, dir } = await skopeoArchive();
    const expected = await skopeoRawDigest(`oci-archive:${archive}:v1`);
    await expectDirUnchanged(dir, async () => {
      const store = await OciArchiveStore.open(archive);
      assert.equal(store.location, archive);
      const manifest = await store.resolve({ tag: "v1" });
      assert.equal(manifest.digest, expected.digest);
      assert.equal(manifest.digest, single.image.manifest.digest);
      assert.deepEqual(await store.tags(), ["v1"]);
      assert.equal((await store.resolve({})).digest, expected.digest);
      const fetched = await fetchAll(store, manifest);
      const { digests, strays } = await store.listBlobs();
      assert.deepEqual(new Set(digests), fetched);
      assert.deepEqual(strays, []);
      assert.ok(await store.exists(single.image.config));
      await store.close();
    });
  });

  it("reads a multi-platform index copied with --all", async () => {
    const { multi } = (await fixtures()).layouts;
    const dir = await scratch();
    const archive = join(dir, "multi.tar");
    await skopeoCopy(`oci:${multi.path}:multi`, `oci-archive:${archive}:multi`, true);
    const expected = await skopeoRawDigest(`oci-archive:${archive}:multi`);
    const store = await OciArchiveStore.open(archive);
    const index = await store.resolve({ tag: "multi" });
    assert.equal(index.digest, expected.digest);
    assert.equal(index.digest, multi.index.digest);
    const fetched = await fetchAll(store, index);
    for (const image of Object.values(multi.platforms)) {
      assert.ok(fetched.has(image.manifest.digest));
      for (const layer of image.layers) assert.ok(fetched.has(layer.digest));
    }
  });

  it("exposes each blob's byte range for copy engines", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive } = await skopeoArchive();
    const store = await OciArchiveStore.open(archive);
    const layer = single.image.layers[0] as Descriptor;
    const entry = await store.blobEntry(layer.digest as Digest);
    assert.equal(entry.path, archive);
    assert.equal(entry.size, layer.size);
    const bytes = (await readFile(archive)).subarray(entry.offset, entry.offset + entry.size);
    assert.deepEqual(bytes, await readFile(join(single.path, "blobs", "sha256", layer.digest.slice(7))));
  });
});

describe("OciArchiveStore: a tar of a layout directory reads like the directory", () => {
  for (const style of ["dot", "named"] as const) {
    it(`tar -C layout -cf x.tar ${style === "dot" ? "." : "oci-layout index.json blobs"}`, async () => {
      const { tagged } = (await fixtures()).layouts;
      const dir = await scratch();
      const archive = await tarLayout(tagged.path, join(dir, "tagged.tar"), style);
      const reader = await LayoutReader.open(tagged.path);
      const store = await OciArchiveStore.open(archive);
      assert.deepEqual(await store.tags(), await reader.tags());
      assert.deepEqual(await store.index(), await reader.index());
      for (const tag of [undefined, "base", "app", "latest", "zstd", "docker"]) {
        assert.deepEqual(await store.resolve({ tag }), await reader.resolve({ tag }), String(tag));
      }
      for (const untagged of tagged.untagged) {
        const descriptor = await store.resolve({ digest: untagged.digest as Digest });
        assert.deepEqual(descriptor, await reader.resolve({ digest: untagged.digest as Digest }));
        await fetchAll(store, descriptor);
      }
      await assert.rejects(store.resolve({ tag: "nope" }), rejectsWith("TAG_NOT_FOUND", archive, "nope"));
      assert.deepEqual(await store.listBlobs(), await reader.listBlobs());
      for (const tag of ["app", "zstd", "docker"]) await fetchAll(store, await store.resolve({ tag }));
    });
  }

  it("a digest wins: index.json is not read (here it is not even JSON)", async () => {
    const { single } = (await fixtures()).layouts;
    const dir = await scratch();
    const layout = join(dir, "layout");
    await cp(single.path, layout, { recursive: true });
    await writeFile(join(layout, "index.json"), "{ not json");
    const archive = await tarLayout(layout, join(dir, "bad-index.tar"));
    const store = await OciArchiveStore.open(archive);
    const descriptor = await store.resolve({ digest: single.image.manifest.digest as Digest });
    assert.deepEqual(descriptor, single.image.manifest);
    await assert.rejects(store.resolve({ tag: "v1" }), rejectsWith("INVALID_DOCUMENT", "index.json"));
  });

  it("warns when a tag names another image than the pinned digest", async () => {
    const { tagged } = (await fixtures()).layouts;
    const dir = await scratch();
    const archive = await tarLayout(tagged.path, join(dir, "tagged.tar"));
    const warnings: string[] = [];
    const store = await OciArchiveStore.open(archive, { onWarning: (message) => warnings.push(message) });
    const pinned = await store.resolve({ tag: "base", digest: tagged.refs.app.digest as Digest });
    assert.equal(pinned.digest, tagged.refs.app.digest);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /tag "base" names .* using the pinned/);
  });

  it("refuses a digest that names a layer, as a reference", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive } = await skopeoArchive();
    const store = await OciArchiveStore.open(archive);
    const layer = single.image.layers[0] as Descriptor;
    await assert.rejects(store.resolve({ digest: layer.digest as Digest }), rejectsWith("INVALID_DOCUMENT"));
    assert.deepEqual(await store.describeFile(layer.digest as Digest), {
      mediaType: "application/octet-stream",
      digest: layer.digest,
      size: layer.size,
    });
  });
});

describe("OciArchiveStore: compressed archives", () => {
  for (const [kind, tool] of [
    ["gzip", ["gzip", "-kn"]],
    ["zstd", ["zstd", "-q", "-k"]],
  ] as const) {
    it(`decompresses a ${kind} archive once into the temp directory, never next to the input`, async () => {
      const { single } = (await fixtures()).layouts;
      const { archive, dir } = await skopeoArchive();
      await sh(tool[0], [...tool.slice(1), archive]);
      const compressed = `${archive}.${kind === "gzip" ? "gz" : "zst"}`;
      await expectDirUnchanged(dir, async () => {
        const debug: string[] = [];
        const store = await OciArchiveStore.open(compressed, { onDebug: (message) => debug.push(message) });
        const announced = debug.find((message) => message.startsWith("decompressing"));
        assert.ok(announced, debug.join("\n"));
        const temp = store.tarIndex.file;
        assert.equal(announced, `decompressing ${compressed} (${kind}) into ${temp} to read it by offset`);
        assert.ok(temp.startsWith(tmpdir()) && dirname(temp) !== dir);
        assert.equal(store.location, compressed);
        const manifest = await store.resolve({ tag: "v1" });
        assert.equal(manifest.digest, single.image.manifest.digest);
        await fetchAll(store, manifest);
        await store.close();
        await assert.rejects(stat(temp), (error: NodeJS.ErrnoException) => error.code === "ENOENT");
        await assert.rejects(stat(dirname(temp)), (error: NodeJS.ErrnoException) => error.code === "ENOENT");
      });
    });
  }

  it("reports a damaged gzip archive as CORRUPT_ARCHIVE and leaves no temp file", async () => {
    const dir = await scratch();
    const { archive } = await skopeoArchive();
    const gz = await sh("gzip", ["-c", archive]);
    const broken = await put(dir, "broken.tar.gz", gz.subarray(0, Math.floor(gz.length / 2)));
    const debug: string[] = [];
    await assert.rejects(
      OciArchiveStore.open(broken, { onDebug: (message) => debug.push(message) }),
      rejectsWith("CORRUPT_ARCHIVE", broken, "not valid gzip"),
    );
    const temp = /into (\S+) to read it/.exec(debug.join("\n"))?.[1];
    assert.ok(temp, debug.join("\n"));
    await assert.rejects(stat(dirname(temp)), (error: NodeJS.ErrnoException) => error.code === "ENOENT");
  });
});

describe("OciArchiveStore: links inside the archive", () => {
  /** single's layout with its blobs moved to `store/`: half symlinked back, half hard-linked. */
  async function linkedLayout(): Promise<string> {
    const { single } = (await fixtures()).layouts;
    const dir = await scratch();
    const layout = join(dir, "layout");
    await cp(single.path, layout, { recursive: true });
    await mkdir(join(layout, "store"));
    const blobs = join(layout, "blobs", "sha256");
    for (const [i, name] of (await readdir(blobs)).sort().entries()) {
      await rename(join(blobs, name), join(layout, "store", name));
      if (i % 2 === 0) await symlink(`../../store/${name}`, join(blobs, name));
      else await link(join(layout, "store", name), join(blobs, name));
    }
    return layout;
  }

  it("serves blobs that are symlink and hard-link entries, resolved within the tar", async () => {
    const { single } = (await fixtures()).layouts;
    const layout = await linkedLayout();
    const archive = await tarLayout(layout, join(dirname(layout), "linked.tar"));
    const listing = (await sh("tar", ["-tvf", archive])).toString();
    assert.match(listing, /^l.* -> \.\.\/\.\.\/store\//m, "the archive holds symlink entries");
    assert.match(listing, /^h.* link to /m, "the archive holds hard-link entries");
    const store = await OciArchiveStore.open(archive);
    const fetched = await fetchAll(store, await store.resolve({ tag: "v1" }));
    assert.equal(fetched.size, 2 + single.image.layers.length);
    assert.deepEqual(new Set((await store.listBlobs()).digests), fetched);
  });

  it("follows a symlinked blobs/sha256 directory", async () => {
    const { single } = (await fixtures()).layouts;
    const dir = await scratch();
    const layout = join(dir, "layout");
    await cp(single.path, layout, { recursive: true });
    await rename(join(layout, "blobs", "sha256"), join(layout, "cas"));
    await symlink("../cas", join(layout, "blobs", "sha256"));
    const archive = await tarLayout(layout, join(dir, "dir-link.tar"), "named");
    const store = await OciArchiveStore.open(archive);
    const fetched = await fetchAll(store, await store.resolve({}));
    assert.deepEqual(new Set((await store.listBlobs()).digests), fetched);
  });

  it("refuses symlinks that point outside the archive (the symlinked fixture tarred at its root)", async () => {
    const { symlinked } = (await fixtures()).layouts;
    const dir = await scratch();
    const archive = await tarLayout(symlinked.path, join(dir, "escaping.tar"));
    const store = await OciArchiveStore.open(archive);
    const manifest = await store.resolve({ tag: "v1" });
    const name = `blobs/sha256/${manifest.digest.slice(7)}`;
    await assert.rejects(
      store.fetch(manifest),
      rejectsWith("UNSAFE_PATH", archive, name, "outside the archive"),
    );
    await assert.rejects(store.exists(manifest), rejectsWith("UNSAFE_PATH"));
  });

  it("refuses an entry recorded with an absolute name", async () => {
    const { single } = (await fixtures()).layouts;
    const names = [
      "oci-layout",
      "index.json",
      ...single.entries.map((entry) => `blobs/sha256/${entry.digest.slice(7)}`),
    ];
    const entries = await layoutFiles(single.path, names);
    const manifest = entries[2];
    assert.ok(manifest);
    manifest.name = `/${manifest.name}`;
    const archive = await put(await scratch(), "absolute.tar", handTar(entries));
    const store = await OciArchiveStore.open(archive);
    await assert.rejects(
      store.fetch(single.image.manifest),
      rejectsWith("UNSAFE_PATH", archive, manifest.name),
    );
  });
});

describe("OciArchiveStore: broken archives", () => {
  it("refuses an archive without oci-layout, naming it (and pointing a docker archive elsewhere)", async () => {
    const { single } = (await fixtures()).layouts;
    const dir = await scratch();
    const plain = await put(dir, "plain.tar", handTar([{ name: "index.json", data: "{}" }]));
    await assert.rejects(OciArchiveStore.open(plain), rejectsWith("INVALID_LAYOUT", plain, "oci-layout"));
    const docker = join(dir, "docker.tar");
    await skopeoCopy(`oci:${single.path}:v1`, `docker-archive:${docker}:lab/x:1`);
    await assert.rejects(OciArchiveStore.open(docker), (error) => {
      assert.ok(isRociError(error, "INVALID_LAYOUT"));
      assert.match(error.hint ?? "", /docker-archive:/);
      return true;
    });
    const bad = await put(
      dir,
      "bad-version.tar",
      handTar([{ name: "oci-layout", data: '{"imageLayoutVersion":"9.9.9"}' }]),
    );
    await assert.rejects(OciArchiveStore.open(bad), rejectsWith("INVALID_LAYOUT", bad, "9.9.9"));
  });

  it("reports a missing file, a directory and a truncated archive", async () => {
    const dir = await scratch();
    const missing = join(dir, "nope.tar");
    await assert.rejects(OciArchiveStore.open(missing), rejectsWith("NOT_FOUND", missing));
    await assert.rejects(OciArchiveStore.open(dir), rejectsWith("INVALID_LAYOUT", dir));
    const { archive } = await skopeoArchive();
    const bytes = await readFile(archive);
    const cut = await put(dir, "cut.tar", bytes.subarray(0, bytes.length - 3000));
    await assert.rejects(OciArchiveStore.open(cut), rejectsWith("CORRUPT_ARCHIVE", cut, "truncated at byte"));
  });

  it("caps index.json at 4 MiB and reports one that is not an index", async () => {
    const layouts = (await fixtures()).layouts;
    const dir = await scratch();
    for (const [name, code] of [
      ["index-too-large", "DOCUMENT_TOO_LARGE"],
      ["index-not-index", "INVALID_DOCUMENT"],
      ["index-bad-json", "INVALID_DOCUMENT"],
    ] as const) {
      const archive = await tarLayout(layouts[name].path, join(dir, `${name}.tar`));
      const store = await OciArchiveStore.open(archive);
      await assert.rejects(store.resolve({}), rejectsWith(code, archive, "index.json"));
    }
  });

  it("reports blobs index.json names but the archive lacks as BLOB_MISSING naming the archive", async () => {
    const layouts = (await fixtures()).layouts;
    const dir = await scratch();
    const archive = await tarLayout(layouts["missing-blob"].path, join(dir, "missing.tar"));
    const store = await OciArchiveStore.open(archive);
    const missing = layouts["missing-blob"].missing;
    assert.equal(await store.exists(missing), false);
    await assert.rejects(store.fetch(missing), rejectsWith("BLOB_MISSING", archive, missing.digest));
    await assert.rejects(
      fetchAll(store, await store.resolve({ tag: "v1" })),
      rejectsWith("BLOB_MISSING", archive),
    );
    await assert.rejects(store.blobEntry(missing.digest as Digest), rejectsWith("BLOB_MISSING", archive));
  });

  it("verifies every fetch: a flipped byte inside the tar is DIGEST_MISMATCH, a wrong size SIZE_MISMATCH", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive } = await skopeoArchive();
    const layer = single.image.layers[1] as Descriptor;
    const entry = await (await OciArchiveStore.open(archive)).blobEntry(layer.digest as Digest);
    await flipByte(archive, entry.offset + 17);
    const store = await OciArchiveStore.open(archive);
    await assert.rejects(
      buffer(await store.fetch(layer)),
      rejectsWith("DIGEST_MISMATCH", layer.digest, archive),
    );
    await assert.rejects(store.fetch({ ...layer, size: layer.size + 1 }), rejectsWith("SIZE_MISMATCH"));
    const corrupt = (await fixtures()).layouts["corrupt-blob"];
    const tarred = await tarLayout(corrupt.path, join(dirname(archive), "corrupt.tar"));
    const other = await OciArchiveStore.open(tarred);
    await assert.rejects(buffer(await other.fetch(corrupt.corrupt)), rejectsWith("DIGEST_MISMATCH"));
  });
});

describe("copying out of an archive (byte ranges, positioned reads)", () => {
  it("lands every blob verified, and a flipped byte inside the tar lands nothing under that digest", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive } = await skopeoArchive();
    const clean = await LayoutStore.init(join(dirname(archive), "clean"));
    const source = await OciArchiveStore.open(archive);
    const result = await copyImage(source, await source.resolve({ tag: "v1" }), clean);
    assert.equal(result.root.digest, single.refs.v1.digest);
    assert.equal(result.outcomes.copied, result.blobs);
    for (const layer of single.image.layers)
      assert.equal(sha256(await readFile(clean.blobPath(layer.digest))), layer.digest);

    const layer = single.image.layers[1] as Descriptor;
    await flipByte(archive, (await source.blobEntry(layer.digest as Digest)).offset + 17);
    const damaged = await LayoutStore.init(join(dirname(archive), "damaged"));
    const reopened = await OciArchiveStore.open(archive);
    await assert.rejects(
      copyImage(reopened, await reopened.resolve({ tag: "v1" }), damaged),
      rejectsWith("DIGEST_MISMATCH", layer.digest),
    );
    assert.equal(await damaged.exists(layer), false);
  });
});

describe("OciArchiveStore: read-only inputs", () => {
  it("reads a plain and a gzip archive on a read-only bind mount, leaving both unchanged", async () => {
    const { single } = (await fixtures()).layouts;
    const { archive, dir } = await skopeoArchive();
    await sh("gzip", ["-kn", archive]);
    await expectDirUnchanged(dir, async () => {
      for (const path of [archive, `${archive}.gz`]) {
        await withReadOnlyBindMount(path, async (mounted) => {
          const store = await OciArchiveStore.open(mounted);
          const manifest = await store.resolve({ tag: "v1" });
          assert.equal(manifest.digest, single.image.manifest.digest);
          await fetchAll(store, manifest);
          await store.close();
        });
      }
    });
  });
});
