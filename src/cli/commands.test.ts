import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { digestOf } from "../digest/hash.ts";
import { fixtures } from "../test-support/fixtures.ts";
import { main } from "./program.ts";

/** Runs the CLI in this process, as the executable would. */
async function roci(...args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const code = await main(args, { stdout, stderr } as unknown as Parameters<typeof main>[1]);
  stdout.end();
  stderr.end();
  return { code, stdout: await buffer(stdout), stderr: (await buffer(stderr)).toString() };
}

const json = async (...args: string[]) => {
  const result = await roci("--format", "json", ...args);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout.toString());
};

describe("roci ls", () => {
  it("lists every entry with names, digest, media type and platforms", async () => {
    const { tagged } = (await fixtures()).layouts;
    const entries = await json("ls", tagged.path);
    assert.equal(entries.length, tagged.entries.length);
    const base = entries.find((entry: { names: string[] }) => entry.names.includes("base"));
    assert.equal(base.digest, tagged.refs.base.digest);
    assert.deepEqual(base.platforms, ["linux/amd64"]);
    assert.ok(
      entries.some((entry: { names: string[] }) => entry.names.length === 0),
      "the untagged entry",
    );
  });

  it("shows the platforms inside an index, and untagged entries as such, in text", async () => {
    const { multi, tagged } = (await fixtures()).layouts;
    const text = (await roci("ls", multi.path)).stdout.toString();
    assert.match(text, /^NAME\s+DIGEST\s+MEDIA TYPE\s+PLATFORMS$/m);
    assert.match(
      text,
      /multi\s+sha256:\S+\s+application\/vnd\.oci\.image\.index\.v1\+json\s+linux\/amd64,linux\/arm64\/v8/,
    );
    assert.match((await roci("ls", tagged.path)).stdout.toString(), /^<untagged>/m);
  });
});

describe("roci tags", () => {
  it("prints one name per line", async () => {
    const { tagged } = (await fixtures()).layouts;
    const lines = (await roci("tags", tagged.path)).stdout.toString().trim().split("\n");
    assert.deepEqual([...lines].sort(), ["app", "base", "docker", "latest", "zstd"]);
    assert.deepEqual([...(await json("tags", tagged.path))].sort(), [...lines].sort());
  });
});

describe("roci inspect", () => {
  it("summarises an image: digest, config, layers, total size", async () => {
    const { single } = (await fixtures()).layouts;
    const result = await json("inspect", `${single.path}:v1`);
    assert.equal(result.resolved.digest, single.refs.v1.digest);
    assert.equal(result.manifest.platform, "linux/amd64");
    assert.deepEqual(result.config.entrypoint, single.imageConfig.Entrypoint);
    assert.deepEqual(result.config.cmd, single.imageConfig.Cmd);
    assert.deepEqual(result.config.env, single.imageConfig.Env);
    assert.equal(result.config.workingDir, single.imageConfig.WorkingDir);
    assert.equal(result.config.user, single.imageConfig.User);
    assert.deepEqual(result.config.labels, single.imageConfig.Labels);
    assert.deepEqual(result.config.exposedPorts, Object.keys(single.imageConfig.ExposedPorts));
    assert.deepEqual(
      result.layers.map((layer: { digest: string }) => layer.digest),
      single.image.layers.map((layer) => layer.digest),
    );
    const layers = single.image.layers.reduce((sum, layer) => sum + layer.size, 0);
    assert.equal(result.totalSize, single.image.manifest.size + single.image.config.size + layers);
  });

  it("lists an index's platforms, labels attestations, and shows the chosen platform's image", async () => {
    const { multi } = (await fixtures()).layouts;
    const result = await json("inspect", "--platform", "linux/arm64/v8", `oci-layout://${multi.path}:multi`);
    assert.equal(result.resolved.digest, multi.index.digest);
    assert.deepEqual(
      result.platforms.map((entry: { platform: string; attestation: boolean }) => [
        entry.platform,
        entry.attestation,
      ]),
      [
        ["linux/amd64", false],
        ["linux/arm64/v8", false],
      ],
    );
    assert.equal(result.manifest.digest, multi.platforms["linux/arm64/v8"].manifest.digest);
    const text = (
      await roci("inspect", "--platform", "linux/arm64/v8", `${multi.path}:multi`)
    ).stdout.toString();
    assert.match(text, /^Platforms:$/m);
    assert.match(text, /^Total size: /m);
  });
});

describe("roci digest", () => {
  it("prints what the reference resolves to; an index stays an index", async () => {
    const { multi } = (await fixtures()).layouts;
    const { stdout } = await roci("digest", `${multi.path}:multi`);
    assert.equal(stdout.toString(), `${multi.index.digest}\n`);
  });

  it("with --platform, prints that platform's manifest digest", async () => {
    const { multi } = (await fixtures()).layouts;
    const { stdout } = await roci("digest", "--platform", "linux/amd64", `${multi.path}:multi`);
    assert.equal(stdout.toString(), `${multi.platforms["linux/amd64"].manifest.digest}\n`);
  });

  it("accepts skopeo's oci: and regclient's ocidir:// forms", async () => {
    const { single } = (await fixtures()).layouts;
    for (const ref of [
      `oci:${single.path}:v1`,
      `ocidir://${single.path}:v1`,
      `oci-layout://${single.path}`,
    ]) {
      assert.equal((await roci("digest", ref)).stdout.toString().trim(), single.refs.v1.digest, ref);
    }
  });
});

describe("roci manifest, config and blob print exact bytes", () => {
  it("manifest bytes hash to the digest; with --platform, to the platform manifest's", async () => {
    const { multi } = (await fixtures()).layouts;
    assert.equal(digestOf((await roci("manifest", `${multi.path}:multi`)).stdout), multi.index.digest);
    const arm = await roci("manifest", "--platform", "linux/arm64/v8", `${multi.path}:multi`);
    assert.equal(digestOf(arm.stdout), multi.platforms["linux/arm64/v8"].manifest.digest);
  });

  it("config bytes hash to the config digest", async () => {
    const { single } = (await fixtures()).layouts;
    assert.equal(digestOf((await roci("config", `${single.path}:v1`)).stdout), single.image.config.digest);
  });

  it("blob bytes hash to the requested digest, through symlinked blobs too", async () => {
    const { symlinked, single } = (await fixtures()).layouts;
    const layer = single.image.layers[1]!;
    const result = await roci("blob", symlinked.path, layer.digest);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(digestOf(result.stdout), layer.digest);
  });
});

describe("roci verify", () => {
  it("exits 0 on a clean layout and says what it checked", async () => {
    const { tagged } = (await fixtures()).layouts;
    const result = await roci("verify", tagged.path);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.toString(), /^ok: .* blobs verified/m);
  });

  it("exits 5 and lists each problem, one per line and in JSON", async () => {
    const missing = (await fixtures()).layouts["missing-blob"];
    const text = await roci("verify", missing.path);
    assert.equal(text.code, 5);
    assert.match(
      text.stdout.toString(),
      new RegExp(`^ERROR\\s+missing\\s+blob ${missing.missing.digest}`, "m"),
    );
    const asJson = await roci("--format", "json", "verify", missing.path);
    const report = JSON.parse(asJson.stdout.toString());
    assert.equal(report.ok, false);
    assert.equal(report.problems[0].subject, missing.missing.digest);
  });
});

describe("roci --help", () => {
  it("teaches: every command has a description and examples, the top level lists exit codes", async () => {
    const top = await roci("--help");
    assert.equal(top.code, 0);
    assert.match(top.stdout.toString(), /Exit status:/);
    for (const command of ["ls", "tags", "inspect", "digest", "manifest", "config", "blob", "verify"]) {
      const help = await roci(command, "--help");
      assert.equal(help.code, 0, command);
      assert.match(help.stdout.toString(), /Examples:/, command);
    }
  });
});
