import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { Digest } from "../digest/digest.ts";
import { isRociError, type RociErrorCode } from "../errors.ts";
import { type DockerReference, parseDockerReference, referenceDigestGrammar } from "./docker-reference.ts";
import {
  formatReference,
  type ImageReference,
  type LayoutScheme,
  parseLayoutPath,
  parseReference,
} from "./reference.ts";

const hex = "a".repeat(64);
const dgst = `sha256:${hex}` as Digest;
const layoutHint = /oci-layout:\/\/PATH\[:TAG\]\[@DIGEST\].*docker-archive:PATH/;

/** A layout reference as `oci-layout://` gives it; keys absent rather than undefined, as the parser returns them. */
function layout(
  path: string,
  tag?: string,
  digest?: Digest,
  scheme: LayoutScheme = "oci-layout",
): ImageReference {
  const ref: ImageReference = { transport: "oci-layout", path, scheme };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

function rejects(input: string, code: RociErrorCode, why: RegExp, bare?: "layout" | "registry"): void {
  assert.throws(
    () => parseReference(input, bare === undefined ? {} : { bare }),
    (error: unknown) => {
      assert.ok(isRociError(error, code), `expected ${code} for ${input}, got ${String(error)}`);
      assert.ok(error.message.includes(`"${input}"`), `message quotes the input: ${error.message}`);
      assert.match(error.message, why);
      assert.match(error.hint ?? "", layoutHint);
      assert.equal(error.subject, input);
      return true;
    },
  );
}

describe("parseReference: oci-layout:// (buildx TestParse)", () => {
  // buildx fills in tag "latest" when there is neither tag nor digest; roci leaves the tag undefined and
  // the resolver applies the same default.
  const cases: [string, ImageReference][] = [
    ["oci-layout:///path/to/oci/layout", layout("/path/to/oci/layout")],
    ["oci-layout:///path/to/oci/layout:1.3", layout("/path/to/oci/layout", "1.3")],
    [`oci-layout:///path/to/oci/layout@${dgst}`, layout("/path/to/oci/layout", undefined, dgst)],
    [`oci-layout:///path/to/oci/@/layout@${dgst}`, layout("/path/to/oci/@/layout", undefined, dgst)],
    ["oci-layout:///path/to/oci/@/layout", layout("/path/to/oci/@/layout")],
    ["oci-layout://C:\\path\\to\\oci\\layout", layout("C:\\path\\to\\oci\\layout")],
    ["oci-layout://C:\\path\\to\\oci\\layout:1.3", layout("C:\\path\\to\\oci\\layout", "1.3")],
    [`oci-layout://C:\\path\\to\\oci\\layout@${dgst}`, layout("C:\\path\\to\\oci\\layout", undefined, dgst)],
    [`oci-layout://C:\\path\\to\\oci\\layout:1.3@${dgst}`, layout("C:\\path\\to\\oci\\layout", "1.3", dgst)],
    ["oci-layout://C:/path/to/oci/layout", layout("C:/path/to/oci/layout")],
    ["oci-layout://C:/path/to/oci/layout:1.3", layout("C:/path/to/oci/layout", "1.3")],
    [`oci-layout://C:/path/to/oci/layout@${dgst}`, layout("C:/path/to/oci/layout", undefined, dgst)],
    [`oci-layout://C:/path/to/oci/layout:1.3@${dgst}`, layout("C:/path/to/oci/layout", "1.3", dgst)],
    ["oci-layout://a:1.3", layout("a", "1.3")],
    [`oci-layout://layout@${dgst}`, layout("layout", undefined, dgst)],
    ["oci-layout://layout", layout("layout")],
  ];
  for (const [input, expected] of cases) {
    it(`reads ${input}`, () => {
      assert.deepEqual(parseReference(input), expected);
    });
  }

  it("leaves the tag undefined when there is neither tag nor digest (the resolver defaults it to latest)", () => {
    const ref = parseReference("oci-layout:///path/to/oci/layout");
    assert.equal("tag" in ref, false);
    assert.equal("digest" in ref, false);
  });

  it("writes buildx's TestRefString example back the same way", () => {
    const text = `oci-layout:///path/to/oci/layout:1.3@${dgst}`;
    assert.equal(formatReference(parseReference(text)), text);
  });
});

describe("layout path rules (a superset of buildx)", () => {
  it("keeps /tmp/build:cache/layout as a path: the tag grammar is anchored", () => {
    assert.deepEqual(
      parseReference("oci-layout:///tmp/build:cache/layout"),
      layout("/tmp/build:cache/layout"),
    );
  });

  it("reads dir@v1:tag as the directory dir@v1 with tag 'tag'", () => {
    assert.deepEqual(parseReference("oci-layout://dir@v1:tag"), layout("dir@v1", "tag"));
  });

  it("keeps an @ that is not followed by a digest in the path: x@sha256:../../etc/passwd is all path", () => {
    assert.deepEqual(
      parseReference("oci-layout://x@sha256:../../etc/passwd"),
      layout("x@sha256:../../etc/passwd"),
    );
  });

  it("reads x@sha256:zz… (not hex) as the path x@sha256 with a tag, as buildx does", () => {
    const zz = "z".repeat(64);
    assert.deepEqual(parseReference(`oci-layout://x@sha256:${zz}`), layout("x@sha256", zz));
  });

  it("takes the digest after the last @ only", () => {
    assert.deepEqual(parseReference(`oci-layout://a@b@c:v@${dgst}`), layout("a@b@c", "v", dgst));
    assert.deepEqual(parseReference(`oci-layout://a@${dgst}/b`), layout(`a@${dgst}/b`));
  });

  it("refuses text after @ that fits the digest grammar but is not a valid digest, as buildx does", () => {
    rejects(`oci-layout://x@sha256:${"a".repeat(40)}`, "INVALID_REFERENCE", /64/);
    rejects(`oci-layout://x@SHA256:${hex}`, "INVALID_REFERENCE", /invalid digest/);
  });

  it("keeps a colon followed by text longer than a tag in the path", () => {
    const long = `v${"1".repeat(128)}`;
    assert.deepEqual(parseReference(`oci-layout://x:${long}`), layout(`x:${long}`));
  });

  it("keeps a colon followed by nothing or by a non-tag in the path", () => {
    assert.deepEqual(parseReference("oci-layout://x:"), layout("x:"));
    assert.deepEqual(parseReference("oci-layout://x:.hidden"), layout("x:.hidden"));
    assert.deepEqual(parseReference("oci-layout://x:@1"), layout("x:@1"));
  });

  it("never takes a Windows drive colon for a tag", () => {
    assert.deepEqual(parseReference("oci-layout://C:\\"), layout("C:\\"));
    assert.deepEqual(parseReference("oci-layout://C:/"), layout("C:/"));
    assert.deepEqual(parseReference("oci-layout://d:\\x:v2"), layout("d:\\x", "v2"));
  });

  it("reads C:foo (no separator after the colon) as path C with tag foo, as buildx does", () => {
    assert.deepEqual(parseReference("oci-layout://C:foo"), layout("C", "foo"));
  });

  it("accepts paths with spaces, @ and : in directory names", () => {
    assert.deepEqual(
      parseReference("oci-layout:///srv/my images/a@b:c/layout:v1"),
      layout("/srv/my images/a@b:c/layout", "v1"),
    );
  });

  it("drops trailing slashes, but keeps / and C:/", () => {
    assert.deepEqual(parseReference("oci-layout:///tmp/layout/"), layout("/tmp/layout"));
    assert.deepEqual(parseReference("oci-layout:///tmp/layout//:v1"), layout("/tmp/layout", "v1"));
    assert.deepEqual(parseReference("oci-layout:///"), layout("/"));
    assert.deepEqual(parseReference("oci-layout:////"), layout("/"));
    assert.deepEqual(parseReference("oci-layout://C://"), layout("C:/"));
  });

  it("lets a trailing slash mark a directory whose name ends in :TAG or @DIGEST", () => {
    assert.deepEqual(parseReference("oci-layout://dir:v1/"), layout("dir:v1"));
    assert.deepEqual(parseReference(`oci-layout://dir@${dgst}/`), layout(`dir@${dgst}`));
    assert.deepEqual(parseReference(`oci-layout://dir:v1/:v2@${dgst}`), layout("dir:v1", "v2", dgst));
  });

  it("refuses an empty path", () => {
    rejects("oci-layout://", "INVALID_REFERENCE", /path is empty/);
    rejects("oci-layout://:v1", "INVALID_REFERENCE", /path is empty/);
    rejects(`oci-layout://@${dgst}`, "INVALID_REFERENCE", /path is empty/);
    rejects("oci:", "INVALID_REFERENCE", /path is empty/);
  });

  it("exports the same rules as parseLayoutPath", () => {
    assert.deepEqual(parseLayoutPath(`/a@b:c/d:v1@${dgst}`), { path: "/a@b:c/d", tag: "v1", digest: dgst });
    assert.deepEqual(parseLayoutPath("/tmp/build:cache/layout"), { path: "/tmp/build:cache/layout" });
    assert.throws(
      () => parseLayoutPath(":v1"),
      (error: unknown) => isRociError(error, "INVALID_REFERENCE"),
    );
  });
});

describe("parseReference: every transport", () => {
  it("reads skopeo's oci:PATH[:TAG][@DIGEST]", () => {
    assert.deepEqual(parseReference("oci:/tmp/l:v1"), layout("/tmp/l", "v1", undefined, "oci"));
    assert.deepEqual(parseReference(`oci:rel@${dgst}`), layout("rel", undefined, dgst, "oci"));
  });

  it("reads regclient's ocidir://PATH[:TAG][@DIGEST]", () => {
    assert.deepEqual(parseReference("ocidir://out/l:v1"), layout("out/l", "v1", undefined, "ocidir"));
    assert.deepEqual(parseReference("ocidir:///abs"), layout("/abs", undefined, undefined, "ocidir"));
  });

  it("reads oci-archive:PATH[:TAG][@DIGEST] with the layout path rules", () => {
    assert.deepEqual(parseReference(`oci-archive:/tmp/a:b/img.tar:v1@${dgst}`), {
      transport: "oci-archive",
      path: "/tmp/a:b/img.tar",
      tag: "v1",
      digest: dgst,
    });
    assert.deepEqual(parseReference("oci-archive:img.tar"), { transport: "oci-archive", path: "img.tar" });
  });

  it("reads docker://REF as an explicit registry reference", () => {
    assert.deepEqual(parseReference("docker://alpine:3"), {
      transport: "registry",
      ref: { domain: "docker.io", path: "library/alpine", tag: "3" },
      explicitScheme: true,
    });
    assert.deepEqual(parseReference(`docker://localhost:5000/a/b:t@${dgst}`), {
      transport: "registry",
      ref: { domain: "localhost:5000", path: "a/b", tag: "t", digest: dgst },
      explicitScheme: true,
    });
  });

  it("reads bare input as a registry reference by default", () => {
    assert.deepEqual(parseReference("alpine"), {
      transport: "registry",
      ref: { domain: "docker.io", path: "library/alpine" },
      explicitScheme: false,
    });
    assert.deepEqual(parseReference("[::1]:5000/x", { bare: "registry" }), {
      transport: "registry",
      ref: { domain: "[::1]:5000", path: "x" },
      explicitScheme: false,
    });
    assert.equal(parseReference("docker:dind").transport, "registry");
  });

  it("reads bare input as a layout path with bare: layout", () => {
    assert.deepEqual(parseReference("alpine", { bare: "layout" }), layout("alpine"));
    assert.deepEqual(
      parseReference("/tmp/build:cache/layout", { bare: "layout" }),
      layout("/tmp/build:cache/layout"),
    );
    assert.deepEqual(parseReference(`./out:v1@${dgst}`, { bare: "layout" }), layout("./out", "v1", dgst));
    assert.deepEqual(parseReference("C://x", { bare: "layout" }), layout("C://x"));
  });

  it("still honours transport prefixes with bare: layout", () => {
    assert.equal(parseReference("docker://alpine", { bare: "layout" }).transport, "registry");
    assert.equal(parseReference("oci-archive:a.tar", { bare: "layout" }).transport, "oci-archive");
  });
});

describe("parseReference: docker-archive", () => {
  const name = (text: string): DockerReference => parseDockerReference(text);

  it("reads docker-archive:PATH", () => {
    assert.deepEqual(parseReference("docker-archive:/a.tar"), {
      transport: "docker-archive",
      path: "/a.tar",
    });
  });

  it("reads docker-archive:PATH:NAME:TAG", () => {
    assert.deepEqual(parseReference("docker-archive:/a.tar:lab/debian:bookworm"), {
      transport: "docker-archive",
      path: "/a.tar",
      name: name("lab/debian:bookworm"),
    });
    assert.deepEqual(parseReference("docker-archive:a.tar:localhost:5000/x:t"), {
      transport: "docker-archive",
      path: "a.tar",
      name: { domain: "localhost:5000", path: "x", tag: "t" },
    });
  });

  it("reads docker-archive:PATH:@N as a 0-based source index", () => {
    assert.deepEqual(parseReference("docker-archive:/a.tar:@1"), {
      transport: "docker-archive",
      path: "/a.tar",
      index: 1,
    });
    assert.deepEqual(parseReference("docker-archive:/a.tar:@0"), {
      transport: "docker-archive",
      path: "/a.tar",
      index: 0,
    });
  });

  it("accepts a colon in a directory name: the name starts after the leftmost colon that leaves a NAME:TAG", () => {
    assert.deepEqual(parseReference("docker-archive:/tmp/x:y/a.tar:lab/debian:bookworm"), {
      transport: "docker-archive",
      path: "/tmp/x:y/a.tar",
      name: name("lab/debian:bookworm"),
    });
    assert.deepEqual(parseReference("docker-archive:/tmp/x:y/a.tar"), {
      transport: "docker-archive",
      path: "/tmp/x:y/a.tar",
    });
    assert.deepEqual(parseReference("docker-archive:/tmp/x:y/a.tar:@2"), {
      transport: "docker-archive",
      path: "/tmp/x:y/a.tar",
      index: 2,
    });
  });

  it("takes the leftmost such colon: /dir:alpine:3 is path /dir with name alpine:3", () => {
    assert.deepEqual(parseReference("docker-archive:/dir:alpine:3"), {
      transport: "docker-archive",
      path: "/dir",
      name: name("alpine:3"),
    });
  });

  it("keeps a name without a tag in the path (NAME:TAG must carry a tag)", () => {
    assert.deepEqual(parseReference("docker-archive:/a.tar:alpine"), {
      transport: "docker-archive",
      path: "/a.tar:alpine",
    });
  });

  it("refuses a name with a digest, an index that is not a number, and an empty path", () => {
    rejects(`docker-archive:/a.tar:alpine:3@${dgst}`, "INVALID_REFERENCE", /cannot carry a digest/);
    rejects(`docker-archive:/a.tar:alpine@${dgst}`, "INVALID_REFERENCE", /cannot carry a digest/);
    rejects("docker-archive:/a.tar:@x", "INVALID_REFERENCE", /source index/);
    rejects("docker-archive:/a.tar:@", "INVALID_REFERENCE", /source index/);
    rejects("docker-archive:/a.tar:@-1", "INVALID_REFERENCE", /source index/);
    rejects("docker-archive:", "INVALID_REFERENCE", /path is empty/);
    rejects("docker-archive::alpine:3", "INVALID_REFERENCE", /path is empty/);
    rejects("docker-archive::@0", "INVALID_REFERENCE", /path is empty/);
  });
});

describe("parseReference: errors", () => {
  it("refuses an empty reference", () => rejects("", "INVALID_REFERENCE", /empty/));

  it("refuses an invalid registry reference, quoting the input and listing the accepted forms", () => {
    rejects("Alpine", "INVALID_REFERENCE", /lower-case/);
    rejects("docker://alpine:-bad", "INVALID_REFERENCE", /tag/);
    rejects("docker://", "INVALID_REFERENCE", /empty/);
  });

  it("names the bare form that applies in the hint", () => {
    try {
      parseReference("", { bare: "layout" });
      assert.fail("expected an error");
    } catch (error) {
      assert.ok(isRociError(error, "INVALID_REFERENCE"));
      assert.match(error.hint ?? "", /bare PATH/);
    }
  });

  it("refuses an unknown scheme:// as UNSUPPORTED_TRANSPORT", () => {
    rejects("http://example.com/x", "UNSUPPORTED_TRANSPORT", /"http" transport/);
    rejects("s3://bucket/x", "UNSUPPORTED_TRANSPORT", /"s3" transport/, "layout");
  });

  it("refuses skopeo transports roci does not read, rather than taking them for registry names", () => {
    rejects("containers-storage:alpine", "UNSUPPORTED_TRANSPORT", /containers-storage/);
    rejects("docker-daemon:alpine:latest", "UNSUPPORTED_TRANSPORT", /docker-daemon/);
    rejects("dir:/tmp/x", "UNSUPPORTED_TRANSPORT", /"dir"/);
  });

  it("reads those prefixes as layout paths with bare: layout", () => {
    assert.deepEqual(parseReference("dir:v1", { bare: "layout" }), layout("dir", "v1"));
  });
});

describe("formatReference", () => {
  const cases: [ImageReference, string][] = [
    [layout("/path/to/oci/layout"), "oci-layout:///path/to/oci/layout"],
    [layout("rel", "v1", dgst), `oci-layout://rel:v1@${dgst}`],
    [layout("/x", "v1", undefined, "oci"), "oci:/x:v1"],
    [layout("/x", undefined, dgst, "ocidir"), `ocidir:///x@${dgst}`],
    [{ transport: "oci-archive", path: "a.tar", tag: "v1" }, "oci-archive:a.tar:v1"],
    [{ transport: "docker-archive", path: "/a.tar" }, "docker-archive:/a.tar"],
    [{ transport: "docker-archive", path: "/a.tar", index: 3 }, "docker-archive:/a.tar:@3"],
    [
      { transport: "docker-archive", path: "/a.tar", name: parseDockerReference("lab/debian:bookworm") },
      "docker-archive:/a.tar:docker.io/lab/debian:bookworm",
    ],
    [
      { transport: "registry", ref: parseDockerReference("alpine:3"), explicitScheme: false },
      "docker.io/library/alpine:3",
    ],
    [
      { transport: "registry", ref: parseDockerReference("alpine:3"), explicitScheme: true },
      "docker://docker.io/library/alpine:3",
    ],
  ];
  for (const [ref, text] of cases) {
    it(`writes ${text}`, () => {
      assert.equal(formatReference(ref), text);
      assert.deepEqual(parseReference(text), ref);
    });
  }

  it("writes a registry reference in full form, so a familiar name like oci:x is not read back as a transport", () => {
    const ref: ImageReference = {
      transport: "registry",
      ref: parseDockerReference("oci:x"),
      explicitScheme: false,
    };
    assert.equal(formatReference(ref), "docker.io/library/oci:x");
    assert.deepEqual(parseReference(formatReference(ref)), ref);
  });

  it("adds a trailing / when a path would otherwise be read as PATH:TAG or PATH@DIGEST", () => {
    assert.equal(formatReference(layout("dir:v1")), "oci-layout://dir:v1/");
    assert.equal(formatReference(layout(`dir@${dgst}`)), `oci-layout://dir@${dgst}/`);
    assert.equal(formatReference(layout("dir:v1", undefined, dgst)), `oci-layout://dir:v1/@${dgst}`);
    assert.equal(formatReference(layout("a@sha256", hex)), `oci-layout://a@sha256/:${hex}`);
    assert.equal(
      formatReference(layout(`x@sha256:${"a".repeat(40)}`)),
      `oci-layout://x@sha256:${"a".repeat(40)}/`,
    );
    assert.equal(formatReference(layout("/tmp/build:cache/layout")), "oci-layout:///tmp/build:cache/layout");
  });

  it("adds a trailing / when a docker-archive path would otherwise be read as PATH:NAME:TAG or PATH:@N", () => {
    const plain = { transport: "docker-archive", path: "/x:a:b" } as const;
    assert.equal(formatReference(plain), "docker-archive:/x:a:b/");
    assert.deepEqual(parseReference(formatReference(plain)), plain);
    const index = { transport: "docker-archive", path: "/x:@1" } as const;
    assert.equal(formatReference(index), "docker-archive:/x:@1/");
    assert.deepEqual(parseReference(formatReference(index)), index);
  });

  it("refuses a docker-archive reference with both a name and an index", () => {
    assert.throws(
      () =>
        formatReference({
          transport: "docker-archive",
          path: "/a.tar",
          name: parseDockerReference("a:b"),
          index: 0,
        }),
      (error: unknown) => isRociError(error, "INVALID_REFERENCE"),
    );
  });
});

// ---- properties ----------------------------------------------------------------------------------

const tag = fc.stringMatching(/^\w[\w.-]{0,127}$/);
const digest: fc.Arbitrary<Digest> = fc
  .oneof(
    fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`),
    fc.stringMatching(/^[a-f0-9]{128}$/).map((h) => `sha512:${h}`),
    fc
      .tuple(
        fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/).filter((alg) => alg !== "sha256" && alg !== "sha512"),
        fc.stringMatching(/^[a-fA-F0-9]{32,40}$/),
      )
      .map(([alg, h]) => `${alg}:${h}`),
  )
  .map((d) => d as Digest);

/** Directory names that stress the rules: plain, with @ and :, and ones ending in :TAG or @DIGEST. */
const segment = fc.oneof(
  fc.string({
    unit: fc.constantFrom("a", "b", "Z", "0", "9", ".", "-", "_", " ", "@", ":"),
    minLength: 1,
    maxLength: 10,
  }),
  fc.tuple(fc.stringMatching(/^[a-z]{1,4}$/), tag).map(([a, t]) => `${a}:${t}`),
  fc.tuple(fc.stringMatching(/^[a-z]{1,4}$/), digest).map(([a, d]) => `${a}@${d}`),
  fc.tuple(fc.stringMatching(/^[a-z]{1,4}$/), digest, tag).map(([a, d, t]) => `${a}@${d}:${t}`),
  fc.constantFrom("@", ":", "x:", "sha256", ".."),
);
const layoutPath = fc.oneof(
  fc
    .tuple(
      fc.constantFrom("", "/", "./", "C:\\", "C:/", "c:"),
      fc.array(segment, { minLength: 1, maxLength: 4 }),
    )
    .map(([prefix, parts]) => prefix + parts.join(prefix.endsWith("\\") ? "\\" : "/")),
  fc.constantFrom("/", "C:/", "C:\\", "C:", "."),
);
const scheme = fc.constantFrom<LayoutScheme>("oci-layout", "oci", "ocidir");
const optionalTag = fc.option(tag, { nil: undefined });
const optionalDigest = fc.option(digest, { nil: undefined });

const layoutReference: fc.Arbitrary<ImageReference> = fc
  .tuple(layoutPath, optionalTag, optionalDigest, scheme)
  .map(([path, t, d, s]) => layout(path, t, d, s));
const ociArchiveReference: fc.Arbitrary<ImageReference> = fc
  .tuple(layoutPath, optionalTag, optionalDigest)
  .map(([path, t, d]) => {
    const ref: ImageReference = { transport: "oci-archive", path };
    if (t !== undefined) ref.tag = t;
    if (d !== undefined) ref.digest = d;
    return ref;
  });
const dockerName = fc
  .tuple(
    fc.constantFrom("", "ghcr.io/", "localhost:5000/", "[::1]:5000/", "docker.io/"),
    fc.stringMatching(/^[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,3})?(?:\/[a-z0-9]{1,5})?$/),
    tag,
  )
  .map(([host, path, t]) => parseDockerReference(`${host}${path}:${t}`));
const dockerArchiveReference: fc.Arbitrary<ImageReference> = fc
  .tuple(layoutPath, fc.oneof(fc.constant(undefined), dockerName, fc.nat({ max: 20 })))
  .map(([path, pick]) => {
    const ref: ImageReference = { transport: "docker-archive", path };
    if (typeof pick === "number") ref.index = pick;
    else if (pick !== undefined) ref.name = pick;
    return ref;
  });
const registryReference: fc.Arbitrary<ImageReference> = fc
  .tuple(dockerName, optionalDigest, fc.boolean(), fc.boolean())
  .map(([name, d, dropTag, explicitScheme]) => {
    const ref: DockerReference = { domain: name.domain, path: name.path };
    if (!dropTag && name.tag !== undefined) ref.tag = name.tag;
    if (d !== undefined) ref.digest = d;
    return { transport: "registry", ref, explicitScheme };
  });

describe("reference properties", () => {
  it("round-trips layout references over paths with @ and : in directory names", () => {
    fc.assert(
      fc.property(layoutReference, (ref) => {
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips oci-archive references", () => {
    fc.assert(
      fc.property(ociArchiveReference, (ref) => {
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
    );
  });

  it("round-trips docker-archive references", () => {
    fc.assert(
      fc.property(dockerArchiveReference, (ref) => {
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips registry references, bare and with docker://", () => {
    fc.assert(
      fc.property(registryReference, (ref) => {
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
    );
  });

  it("writes a layout path without : or @ plainly, as buildx's Ref.String does", () => {
    const plainPath = fc
      .array(fc.stringMatching(/^[a-zA-Z0-9._ -]{1,8}$/), { minLength: 1, maxLength: 4 })
      .map((parts) => `/${parts.join("/")}`);
    fc.assert(
      fc.property(plainPath, optionalTag, optionalDigest, (path, t, d) => {
        const expected = `oci-layout://${path}${t === undefined ? "" : `:${t}`}${d === undefined ? "" : `@${d}`}`;
        assert.equal(formatReference(layout(path, t, d)), expected);
      }),
    );
  });

  it("parses the output of buildx's Ref.String back to the same path, tag and digest", () => {
    fc.assert(
      fc.property(layoutPath, tag, optionalDigest, (path, t, d) => {
        // Without a digest, a path ending in @ALGORITHM followed by a hex tag reads as PATH@DIGEST, in
        // buildx too; that is the one text Ref.String writes ambiguously when a tag is present.
        const at = path.lastIndexOf("@");
        fc.pre(d !== undefined || at < 0 || !referenceDigestGrammar.test(`${path.slice(at + 1)}:${t}`));
        const text = `oci-layout://${path}:${t}${d === undefined ? "" : `@${d}`}`;
        assert.deepEqual(parseReference(text), layout(path, t, d));
      }),
    );
  });

  it("round-trips whatever the parser returns, for text made of separators, digests and hosts", () => {
    const unit = fc.constantFrom(
      "a",
      "Z",
      "0",
      ".",
      "-",
      "_",
      "/",
      "\\",
      "@",
      ":",
      " ",
      "C",
      dgst,
      "@sha256:",
      "localhost:5000/",
    );
    const prefixes = fc.constantFrom(
      "",
      "oci-layout://",
      "oci:",
      "ocidir://",
      "oci-archive:",
      "docker-archive:",
      "docker://",
    );
    fc.assert(
      fc.property(prefixes, fc.string({ unit, maxLength: 12 }), (p, s) => {
        let ref: ImageReference;
        try {
          ref = parseReference(p + s, { bare: "layout" });
        } catch {
          return;
        }
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws anything but a RociError on arbitrary input, in either bare mode", () => {
    const prefixes = fc.constantFrom(
      "",
      "oci-layout://",
      "oci:",
      "ocidir://",
      "oci-archive:",
      "docker-archive:",
      "docker://",
    );
    fc.assert(
      fc.property(
        prefixes,
        fc.string({ maxLength: 60 }),
        fc.constantFrom<"layout" | "registry">("layout", "registry"),
        (p, s, bare) => {
          try {
            parseReference(p + s, { bare });
          } catch (error) {
            assert.ok(
              isRociError(error, "INVALID_REFERENCE") || isRociError(error, "UNSUPPORTED_TRANSPORT"),
              String(error),
            );
          }
        },
      ),
    );
  });
});
