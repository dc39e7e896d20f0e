import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { Digest } from "../digest/digest.ts";
import { isRociError } from "../errors.ts";
import {
  type DockerReference,
  familiarName,
  familiarString,
  formatDockerReference,
  parseDockerReference,
  tryParseDockerReference,
} from "./docker-reference.ts";

const sha256 = `sha256:${"a".repeat(64)}` as Digest;
const sha512 = `sha512:${"0123456789abcdef".repeat(8)}` as Digest;

/** Asserts that parsing `input` fails with INVALID_REFERENCE, and that the message quotes the input and says `why`. */
function rejects(input: string, why: RegExp): void {
  assert.throws(
    () => parseDockerReference(input),
    (error: unknown) => {
      assert.ok(isRociError(error, "INVALID_REFERENCE"), `expected INVALID_REFERENCE for ${input}`);
      assert.ok(
        error.message.includes(`"${input.slice(0, 200)}`),
        `message quotes the input: ${error.message}`,
      );
      assert.match(error.message, why);
      assert.equal(error.subject, input);
      assert.ok(error.hint !== undefined && error.hint.length > 0);
      return true;
    },
  );
}

describe("parseDockerReference", () => {
  describe("normalises names the way docker does", () => {
    const cases: [string, DockerReference][] = [
      ["alpine", { domain: "docker.io", path: "library/alpine" }],
      ["alpine:3.20", { domain: "docker.io", path: "library/alpine", tag: "3.20" }],
      ["lab/debian:bookworm", { domain: "docker.io", path: "lab/debian", tag: "bookworm" }],
      ["docker.io/alpine", { domain: "docker.io", path: "library/alpine" }],
      ["docker.io/library/alpine", { domain: "docker.io", path: "library/alpine" }],
      ["index.docker.io/alpine", { domain: "docker.io", path: "library/alpine" }],
      ["index.docker.io/lab/debian", { domain: "docker.io", path: "lab/debian" }],
      ["a/b/c/d", { domain: "docker.io", path: "a/b/c/d" }],
    ];
    for (const [input, expected] of cases) {
      it(`reads ${input} as ${formatDockerReference(expected)}`, () => {
        assert.deepEqual(parseDockerReference(input), expected);
      });
    }
  });

  describe("takes the first component as the registry host only when it looks like one", () => {
    const cases: [string, DockerReference][] = [
      ["ghcr.io/org/app", { domain: "ghcr.io", path: "org/app" }],
      ["localhost/app", { domain: "localhost", path: "app" }],
      ["localhost:5000/a/b:t", { domain: "localhost:5000", path: "a/b", tag: "t" }],
      ["registry:5000/app", { domain: "registry:5000", path: "app" }],
      ["127.0.0.1:5000/app:1", { domain: "127.0.0.1:5000", path: "app", tag: "1" }],
      ["[::1]:5000/x", { domain: "[::1]:5000", path: "x" }],
      ["[2001:db8::1]/team/x:dev", { domain: "[2001:db8::1]", path: "team/x", tag: "dev" }],
      ["Registry/app", { domain: "Registry", path: "app" }],
      ["example.com/app", { domain: "example.com", path: "app" }],
      ["registry/app", { domain: "docker.io", path: "registry/app" }],
    ];
    for (const [input, expected] of cases) {
      it(`reads ${input} as domain ${expected.domain}, path ${expected.path}`, () => {
        assert.deepEqual(parseDockerReference(input), expected);
      });
    }

    it("does not add library/ on a registry other than docker.io", () => {
      assert.deepEqual(parseDockerReference("localhost:5000/app"), { domain: "localhost:5000", path: "app" });
    });

    it("reads a single component with a colon as name and tag, not as host:port (as docker does)", () => {
      assert.deepEqual(parseDockerReference("localhost:5000"), {
        domain: "docker.io",
        path: "library/localhost",
        tag: "5000",
      });
    });
  });

  describe("tags and digests", () => {
    it("leaves the tag undefined when none is given (no latest default here)", () => {
      const ref = parseDockerReference("alpine");
      assert.equal(ref.tag, undefined);
      assert.equal("tag" in ref, false);
      assert.equal("digest" in ref, false);
    });

    it("reads a digest-only reference", () => {
      assert.deepEqual(parseDockerReference(`alpine@${sha256}`), {
        domain: "docker.io",
        path: "library/alpine",
        digest: sha256,
      });
    });

    it("reads a tag and a digest together", () => {
      assert.deepEqual(parseDockerReference(`ghcr.io/o/r:v1@${sha512}`), {
        domain: "ghcr.io",
        path: "o/r",
        tag: "v1",
        digest: sha512,
      });
    });

    it("reads a digest on a host with a port", () => {
      assert.deepEqual(parseDockerReference(`localhost:5000/app@${sha256}`), {
        domain: "localhost:5000",
        path: "app",
        digest: sha256,
      });
    });

    it("accepts a well-formed digest of an algorithm roci cannot verify", () => {
      const md5 = `md5:${"0123456789abcdef".repeat(2)}`;
      assert.equal(parseDockerReference(`app@${md5}`).digest, md5);
    });

    it("accepts a tag of exactly 128 characters", () => {
      const tag = `v${"1".repeat(127)}`;
      assert.equal(parseDockerReference(`app:${tag}`).tag, tag);
    });

    it("accepts every separator in path components: '.', '_', '__' and runs of '-'", () => {
      assert.equal(parseDockerReference("lab/a.b_c__d---e/f-g").path, "lab/a.b_c__d---e/f-g");
    });

    it("takes a first component with '.' for a host even where a path component was meant (as docker does)", () => {
      assert.equal(parseDockerReference("a.b/c").domain, "a.b");
      rejects("a.b_c/d", /host/);
    });
  });

  describe("rejects invalid references with INVALID_REFERENCE", () => {
    it("rejects an empty reference", () => rejects("", /empty/));
    it("rejects a tag without a name", () => rejects(":tag", /empty/));
    it("rejects a digest without a name", () => rejects(`@${sha256}`, /empty/));
    it("rejects an upper-case repository path", () => rejects("docker.io/Library/alpine", /lower-case/));
    it("rejects an upper-case single name", () => rejects("Alpine", /lower-case/));
    it("rejects an upper-case path on another registry", () => rejects("ghcr.io/Org/app", /lower-case/));
    it("rejects a tag longer than 128 characters", () =>
      rejects(`app:v${"1".repeat(128)}`, /longer than 128/));
    it("rejects a tag starting with '.' or '-'", () => {
      rejects("app:.x", /tag/);
      rejects("app:-x", /tag/);
    });
    it("rejects an invalid path component", () => {
      rejects("lab/a..b", /component/);
      rejects("lab/debian-", /component/);
      rejects("lab/_debian", /component/);
      rejects("lab/a___b", /component/);
    });
    it("rejects an empty path component", () => rejects("lab//debian", /empty component/));
    it("rejects a registry host that is not a host", () => {
      rejects("-bad.example/app", /host/);
      rejects("[fe80::1%eth0]:5000/app", /host/);
      rejects("example.com:port/app", /host/);
    });
    it("rejects a digest that is not hex", () => rejects(`app@sha256:${"z".repeat(64)}`, /not a digest/));
    it("rejects a sha256 digest of the wrong length", () => rejects(`app@sha256:${"a".repeat(40)}`, /64/));
    it("rejects a digest whose algorithm the digest grammar refuses (upper case)", () =>
      rejects(`app@SHA256:${"a".repeat(64)}`, /invalid digest/));
    it("rejects a digest shorter than 32 hex characters", () => rejects("app@md5:abcdef", /not a digest/));
    it("rejects a 64-character hexadecimal string (an image ID)", () => rejects("a".repeat(64), /image ID/));
    it("rejects a name longer than 255 characters once normalised", () => {
      const path = `${"a".repeat(100)}/${"b".repeat(140)}`; // 241 characters, 251 with docker.io/
      assert.equal(parseDockerReference(path).path, path);
      rejects(`${path}/cdef`, /longer than 255/);
    });
    it("rejects a path with characters outside the grammar", () => {
      rejects("app name", /component/);
      rejects("app/", /empty component/);
    });
  });

  it("reports a problem instead of throwing through tryParseDockerReference", () => {
    assert.deepEqual(tryParseDockerReference("alpine"), {
      ok: true,
      ref: { domain: "docker.io", path: "library/alpine" },
    });
    const result = tryParseDockerReference("Alpine");
    assert.equal(result.ok, false);
  });
});

describe("formatDockerReference", () => {
  it("writes the full normalised form domain/path[:tag][@digest]", () => {
    assert.equal(formatDockerReference(parseDockerReference("alpine")), "docker.io/library/alpine");
    assert.equal(
      formatDockerReference(parseDockerReference(`lab/debian:bookworm@${sha256}`)),
      `docker.io/lab/debian:bookworm@${sha256}`,
    );
    assert.equal(formatDockerReference(parseDockerReference("[::1]:5000/x:t")), "[::1]:5000/x:t");
  });
});

describe("familiarName and familiarString", () => {
  it("drop docker.io/ and library/ as docker does", () => {
    assert.equal(familiarName(parseDockerReference("docker.io/library/alpine:3")), "alpine");
    assert.equal(familiarString(parseDockerReference("docker.io/library/alpine:3")), "alpine:3");
    assert.equal(familiarName(parseDockerReference("lab/debian")), "lab/debian");
    assert.equal(familiarString(parseDockerReference(`ghcr.io/o/r@${sha256}`)), `ghcr.io/o/r@${sha256}`);
  });

  it("keep library/ when something is nested under it", () => {
    assert.equal(familiarName({ domain: "docker.io", path: "library/a/b" }), "library/a/b");
  });

  it("keep library/ on a registry other than docker.io", () => {
    assert.equal(familiarName({ domain: "localhost", path: "library/a" }), "localhost/library/a");
  });
});

// ---- properties ----------------------------------------------------------------------------------

const pathComponent = fc.stringMatching(/^[a-z0-9]{1,4}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,4}){0,2}$/);
/** A first component that cannot be mistaken for a host (no "."). */
const plainComponent = fc.stringMatching(/^[a-z0-9]{1,4}(?:(?:_|__|-{1,2})[a-z0-9]{1,4}){0,2}$/);
const domainLabel = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?$/);
const port = fc.integer({ min: 1, max: 65535 }).map((n) => `:${n}`);
const domain = fc
  .oneof(
    fc
      .tuple(fc.array(domainLabel, { minLength: 2, maxLength: 3 }), fc.option(port, { nil: "" }))
      .map(([labels, p]) => labels.join(".") + p),
    fc.tuple(domainLabel, port).map(([label, p]) => label + p),
    fc.option(port, { nil: "" }).map((p) => `localhost${p}`),
    fc
      .tuple(fc.stringMatching(/^[a-fA-F0-9]{0,4}(?::[a-fA-F0-9]{0,4}){1,7}$/), fc.option(port, { nil: "" }))
      .map(([a, p]) => `[${a}]${p}`),
    fc.stringMatching(/^[A-Z][a-zA-Z0-9]{0,6}$/),
  )
  .filter((d) => d !== "docker.io" && d !== "index.docker.io");
const tagArbitrary = fc.stringMatching(/^\w[\w.-]{0,127}$/);
const digestArbitrary: fc.Arbitrary<Digest> = fc
  .oneof(
    fc.stringMatching(/^[a-f0-9]{64}$/).map((hex) => `sha256:${hex}`),
    fc.stringMatching(/^[a-f0-9]{128}$/).map((hex) => `sha512:${hex}`),
    fc
      .tuple(
        fc
          .stringMatching(/^[a-z][a-z0-9]{0,5}(?:[-_+.][a-z][a-z0-9]{0,3}){0,2}$/)
          .filter((alg) => alg !== "sha256" && alg !== "sha512"),
        fc.stringMatching(/^[a-fA-F0-9]{32,70}$/),
      )
      .map(([alg, hex]) => `${alg}:${hex}`),
  )
  .map((d) => d as Digest);

interface Parts {
  domain: string | undefined;
  components: string[];
  tag: string | undefined;
  digest: Digest | undefined;
}

const parts: fc.Arbitrary<Parts> = fc.record({
  domain: fc.option(domain, { nil: undefined }),
  components: fc
    .tuple(plainComponent, fc.array(pathComponent, { maxLength: 3 }))
    .map(([first, rest]) => [first, ...rest]),
  tag: fc.option(tagArbitrary, { nil: undefined }),
  digest: fc.option(digestArbitrary, { nil: undefined }),
});

function textOf(p: Parts): string {
  let text = (p.domain === undefined ? "" : `${p.domain}/`) + p.components.join("/");
  if (p.tag !== undefined) text += `:${p.tag}`;
  if (p.digest !== undefined) text += `@${p.digest}`;
  return text;
}

/** The normalisation rules, restated: what the parser must return for generated parts. */
function expectedOf(p: Parts): DockerReference {
  const joined = p.components.join("/");
  const ref: DockerReference =
    p.domain !== undefined
      ? { domain: p.domain, path: joined }
      : { domain: "docker.io", path: p.components.length === 1 ? `library/${joined}` : joined };
  if (p.tag !== undefined) ref.tag = p.tag;
  if (p.digest !== undefined) ref.digest = p.digest;
  return ref;
}

describe("docker reference properties", () => {
  it("parses every generated valid reference into its normalised parts", () => {
    fc.assert(
      fc.property(parts, (p) => {
        assert.deepEqual(parseDockerReference(textOf(p)), expectedOf(p));
      }),
    );
  });

  it("round-trips: parse(format(r)) deep-equals r", () => {
    fc.assert(
      fc.property(parts, (p) => {
        const ref = parseDockerReference(textOf(p));
        assert.deepEqual(parseDockerReference(formatDockerReference(ref)), ref);
      }),
    );
  });

  it("round-trips through the familiar form too", () => {
    fc.assert(
      fc.property(parts, (p) => {
        const ref = parseDockerReference(textOf(p));
        assert.deepEqual(parseDockerReference(familiarString(ref)), ref);
      }),
    );
  });

  it("writes a reference given in full form exactly as it was given", () => {
    fc.assert(
      fc.property(parts, (p) => {
        const full = formatDockerReference(expectedOf(p));
        assert.equal(formatDockerReference(parseDockerReference(full)), full);
      }),
    );
  });

  it("never throws anything but INVALID_REFERENCE on arbitrary input", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        try {
          parseDockerReference(text);
        } catch (error) {
          assert.ok(isRociError(error, "INVALID_REFERENCE"));
        }
      }),
    );
  });
});
