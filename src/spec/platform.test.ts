import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isRociError } from "../errors.ts";
import {
  formatPlatform,
  hostPlatform,
  hostPlatformOf,
  isAttestation,
  noMatchRank,
  normalizePlatform,
  type Platform,
  parsePlatform,
  platformMatcher,
  selectPlatform,
} from "./platform.ts";

/** Shorthand: tests read better with platforms written the way users type them. */
const p = (text: string, extra: Partial<Platform> = {}): Platform => ({ ...parsePlatform(text), ...extra });
const norm = (text: string): string => formatPlatform(normalizePlatform(p(text)));
const orderOf = (text: string, strict = false): string[] =>
  platformMatcher(p(text), { strict }).order.map(formatPlatform);

// Realistic spellings, aliases included, so properties exercise every normalisation rule.
const osNames = ["linux", "windows", "darwin", "macos", "freebsd", "Linux", "MacOS", "WINDOWS", "unknown"];
const archNames = [
  "amd64",
  "x86_64",
  "x86-64",
  "AMD64",
  "386",
  "i386",
  "x86",
  "arm",
  "armhf",
  "armel",
  "arm64",
  "aarch64",
  "ARM64",
  "ppc64le",
  "s390x",
  "riscv64",
  "loong64",
  "mips64le",
  "unknown",
];
const variantNames = [
  "v1",
  "v2",
  "v3",
  "v4",
  "v5",
  "v6",
  "v7",
  "v8",
  "5",
  "6",
  "7",
  "8",
  "9",
  "v8.0",
  "v8.2",
];
const moreVariants = ["v9", "v9.0", "v9.3", "V7", "V8", "9.0"];

const arbOs = fc.constantFrom(...osNames);
const arbArch = fc.constantFrom(...archNames);
const arbVariant = fc.option(fc.constantFrom(...variantNames, ...moreVariants), { nil: undefined });
const arbPlatform: fc.Arbitrary<Platform> = fc
  .record({
    os: arbOs,
    architecture: arbArch,
    variant: arbVariant,
    osVersion: fc.option(fc.constantFrom("10.0.17763.1234", "10.0.20348.1", "10.0.17763", "6.1"), {
      nil: undefined,
    }),
    osFeatures: fc.option(fc.subarray(["win32k", "sse4", "gpu"]), { nil: undefined }),
  })
  .map(({ os, architecture, variant, osVersion, osFeatures }) => {
    const platform: Platform = { os, architecture };
    if (variant !== undefined) platform.variant = variant;
    if (osVersion !== undefined) platform["os.version"] = osVersion;
    if (osFeatures !== undefined) platform["os.features"] = osFeatures;
    return platform;
  });
const arbSpecifier = fc
  .tuple(arbOs, arbArch, arbVariant)
  .map(([os, arch, variant]) => (variant === undefined ? `${os}/${arch}` : `${os}/${arch}/${variant}`));

function assertUsageError(input: string): void {
  assert.throws(
    () => parsePlatform(input),
    (error: unknown) => {
      assert.ok(isRociError(error, "USAGE"), `expected a USAGE RociError for ${JSON.stringify(input)}`);
      assert.ok(error.message.includes(`"${input}"`), `message names the input: ${error.message}`);
      assert.ok(error.message.includes("os/arch[/variant]"), `message shows the form: ${error.message}`);
      assert.equal(error.subject, input);
      return true;
    },
  );
}

describe("parsePlatform", () => {
  it("reads os/arch", () => {
    assert.deepEqual(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64" });
  });

  it("reads os/arch/variant", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
  });

  it("keeps the text as written, leaving aliases to normalizePlatform", () => {
    assert.deepEqual(parsePlatform("Linux/aarch64"), { os: "Linux", architecture: "aarch64" });
  });

  it("refuses an os without an architecture, since guessing it from the host is not reproducible", () => {
    assertUsageError("linux");
    assertUsageError("arm64");
  });

  it("refuses empty, extra or malformed components with USAGE, naming the input and the expected form", () => {
    for (const input of ["", "/", "linux/", "/amd64", "linux//v7", "linux/arm/", "linux/arm/v7/extra"]) {
      assertUsageError(input);
    }
    for (const input of ["linux/amd 64", "linux/*", "linux/amd64:10.0", "windows(10.0)/amd64"]) {
      assertUsageError(input);
    }
  });
});

describe("formatPlatform", () => {
  it("writes os/arch without a variant and os/arch/variant with one", () => {
    assert.equal(formatPlatform({ os: "linux", architecture: "amd64" }), "linux/amd64");
    assert.equal(formatPlatform({ os: "linux", architecture: "arm", variant: "v7" }), "linux/arm/v7");
  });

  it("treats an empty variant as no variant", () => {
    assert.equal(formatPlatform({ os: "linux", architecture: "amd64", variant: "" }), "linux/amd64");
  });

  it("leaves out os.version and os.features", () => {
    const windows = p("windows/amd64", { "os.version": "10.0.17763.1", "os.features": ["win32k"] });
    assert.equal(formatPlatform(windows), "windows/amd64");
  });

  it("is the inverse of parsePlatform (property)", () => {
    fc.assert(
      fc.property(arbSpecifier, (text) => {
        assert.equal(formatPlatform(parsePlatform(text)), text);
        assert.deepEqual(parsePlatform(formatPlatform(parsePlatform(text))), parsePlatform(text));
      }),
    );
  });
});

describe("normalizePlatform", () => {
  it("lower-cases os, architecture and variant", () => {
    assert.equal(norm("LINUX/ARM/V6"), "linux/arm/v6");
  });

  it("spells macos as darwin", () => {
    assert.equal(norm("macos/arm64"), "darwin/arm64");
  });

  it("spells i386 and x86 as 386 and drops their variant", () => {
    assert.equal(norm("linux/i386"), "linux/386");
    assert.equal(norm("linux/x86/v2"), "linux/386");
  });

  it("spells x86_64 and x86-64 as amd64", () => {
    assert.equal(norm("linux/x86_64"), "linux/amd64");
    assert.equal(norm("linux/x86-64/v3"), "linux/amd64/v3");
  });

  it("treats amd64/v1 as plain amd64 but keeps higher levels", () => {
    assert.equal(norm("linux/amd64/v1"), "linux/amd64");
    assert.equal(norm("linux/amd64/v2"), "linux/amd64/v2");
  });

  it("spells aarch64 as arm64", () => {
    assert.equal(norm("linux/aarch64"), "linux/arm64");
  });

  it("treats arm64/v8 (also 8 and v8.0) as plain arm64 but keeps later revisions", () => {
    assert.equal(norm("linux/arm64/v8"), "linux/arm64");
    assert.equal(norm("linux/arm64/8"), "linux/arm64");
    assert.equal(norm("linux/aarch64/v8.0"), "linux/arm64");
    assert.equal(norm("linux/arm64/v8.2"), "linux/arm64/v8.2");
  });

  it("spells arm64 9 and v9.0 as v9", () => {
    assert.equal(norm("linux/arm64/9"), "linux/arm64/v9");
    assert.equal(norm("linux/arm64/v9.0"), "linux/arm64/v9");
  });

  it("reads armhf as arm/v7 and armel as arm/v6", () => {
    assert.equal(norm("linux/armhf"), "linux/arm/v7");
    assert.equal(norm("linux/armel"), "linux/arm/v6");
  });

  it("gives 32-bit arm the explicit default variant v7", () => {
    assert.equal(norm("linux/arm"), "linux/arm/v7");
    assert.equal(norm("linux/arm/7"), "linux/arm/v7");
  });

  it("prefixes bare arm variants 5, 6 and 8 with v", () => {
    assert.equal(norm("linux/arm/5"), "linux/arm/v5");
    assert.equal(norm("linux/arm/6"), "linux/arm/v6");
    assert.equal(norm("linux/arm/8"), "linux/arm/v8");
  });

  it("leaves unknown architectures and variants alone, apart from case", () => {
    assert.equal(norm("linux/ppc64le"), "linux/ppc64le");
    assert.equal(norm("linux/riscv64/RVA22"), "linux/riscv64/rva22");
  });

  it("keeps os.version and os.features as given", () => {
    const windows = p("Windows/x86_64", { "os.version": "10.0.17763.5329", "os.features": ["win32k"] });
    assert.deepEqual(normalizePlatform(windows), {
      os: "windows",
      architecture: "amd64",
      "os.version": "10.0.17763.5329",
      "os.features": ["win32k"],
    });
  });

  it("represents no variant by an absent key, never an empty string", () => {
    assert.equal(Object.hasOwn(normalizePlatform(p("linux/amd64/v1")), "variant"), false);
  });

  it("does not modify its argument", () => {
    const input = p("linux/aarch64/v8");
    normalizePlatform(input);
    assert.deepEqual(input, { os: "linux", architecture: "aarch64", variant: "v8" });
  });

  it("is idempotent (property)", () => {
    fc.assert(
      fc.property(arbPlatform, (platform) => {
        const once = normalizePlatform(platform);
        assert.deepEqual(normalizePlatform(once), once);
      }),
    );
  });
});

describe("hostPlatform", () => {
  const host = (
    arch: string,
    more: { platform?: string; armVersion?: string; endianness?: "BE" | "LE" } = {},
  ) =>
    formatPlatform(
      hostPlatformOf({
        platform: more.platform ?? "linux",
        arch,
        armVersion: more.armVersion,
        endianness: "LE",
        ...more,
      }),
    );

  it("maps Node's architecture names to the ones images use", () => {
    assert.equal(host("x64"), "linux/amd64");
    assert.equal(host("ia32"), "linux/386");
    assert.equal(host("arm64"), "linux/arm64");
    assert.equal(host("s390x"), "linux/s390x");
    assert.equal(host("riscv64"), "linux/riscv64");
    assert.equal(host("loong64"), "linux/loong64");
    assert.equal(host("mipsel"), "linux/mipsle");
  });

  it("names 32-bit arm by the ARM version Node was built for, v7 by default", () => {
    assert.equal(host("arm"), "linux/arm/v7");
    assert.equal(host("arm", { armVersion: "default" }), "linux/arm/v7");
    assert.equal(host("arm", { armVersion: "6" }), "linux/arm/v6");
  });

  it("tells ppc64le from big-endian ppc64 by byte order", () => {
    assert.equal(host("ppc64", { endianness: "LE" }), "linux/ppc64le");
    assert.equal(host("ppc64", { endianness: "BE" }), "linux/ppc64");
  });

  it("is windows on win32 and linux everywhere else, macOS included", () => {
    assert.equal(host("x64", { platform: "win32" }), "windows/amd64");
    assert.equal(host("arm64", { platform: "darwin" }), "linux/arm64");
    assert.equal(host("x64", { platform: "freebsd" }), "linux/amd64");
  });

  it("describes this machine as a normalised platform", () => {
    const platform = hostPlatform();
    assert.deepEqual(normalizePlatform(platform), platform);
    assert.ok(platform.os === "linux" || platform.os === "windows");
    assert.notEqual(platform.architecture, "x64");
  });
});

describe("isAttestation", () => {
  it("is true for unknown/unknown, the platform BuildKit gives attestation manifests", () => {
    assert.equal(isAttestation(p("unknown/unknown")), true);
    assert.equal(isAttestation(p("Unknown/UNKNOWN")), true);
  });

  it("is false for real platforms, half-unknown ones and a missing platform", () => {
    assert.equal(isAttestation(p("linux/amd64")), false);
    assert.equal(isAttestation(p("linux/unknown")), false);
    assert.equal(isAttestation(undefined), false);
  });
});

describe("platformMatcher", () => {
  describe("exact matches", () => {
    it("ranks the wanted platform 0", () => {
      const matcher = platformMatcher(p("linux/amd64"));
      assert.equal(matcher.rank(p("linux/amd64")), 0);
      assert.equal(matcher.matches(p("linux/amd64")), true);
    });

    it("normalises both sides, so aliases match", () => {
      assert.equal(platformMatcher(p("linux/aarch64")).rank(p("linux/arm64/v8")), 0);
      assert.equal(platformMatcher(p("linux/arm64/v8")).rank(p("linux/aarch64")), 0);
      assert.equal(platformMatcher(p("linux/armhf")).rank(p("linux/arm")), 0);
      assert.equal(platformMatcher(p("linux/amd64/v1")).rank(p("linux/x86_64")), 0);
    });

    it("ranks a platform it does not accept noMatchRank, which is Infinity", () => {
      const matcher = platformMatcher(p("linux/amd64"));
      assert.equal(noMatchRank, Number.POSITIVE_INFINITY);
      assert.equal(matcher.rank(p("linux/arm64")), noMatchRank);
      assert.equal(matcher.matches(p("linux/arm64")), false);
    });

    it("never accepts another os", () => {
      assert.equal(platformMatcher(p("linux/amd64")).matches(p("windows/amd64")), false);
      assert.equal(platformMatcher(p("darwin/arm64")).matches(p("linux/arm64")), false);
      assert.equal(platformMatcher(p("macos/arm64")).matches(p("darwin/arm64")), true);
    });
  });

  describe("32-bit arm fallbacks", () => {
    it("accepts lower arm variants down to v5, nearest first", () => {
      assert.deepEqual(orderOf("linux/arm/v7"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
      assert.deepEqual(orderOf("linux/arm/v8"), [
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
      ]);
      assert.deepEqual(orderOf("linux/arm/v5"), ["linux/arm/v5"]);
    });

    it("ranks each fallback by its distance from the wanted variant", () => {
      const matcher = platformMatcher(p("linux/arm/v7"));
      assert.equal(matcher.rank(p("linux/arm")), 0);
      assert.equal(matcher.rank(p("linux/armel")), 1);
      assert.equal(matcher.rank(p("linux/arm/5")), 2);
    });

    it("never accepts a higher variant or arm64", () => {
      const matcher = platformMatcher(p("linux/arm/v6"));
      assert.equal(matcher.matches(p("linux/arm/v7")), false);
      assert.equal(matcher.matches(p("linux/arm64")), false);
    });
  });

  describe("arm64 fallbacks", () => {
    it("accepts arm64, then 32-bit arm from v8 down to v5", () => {
      const expected = ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"];
      assert.deepEqual(orderOf("linux/arm64"), expected);
      assert.deepEqual(orderOf("linux/aarch64/v8"), expected);
    });

    it("accepts lower v8 revisions before 32-bit arm", () => {
      assert.deepEqual(orderOf("linux/arm64/v8.2"), [
        "linux/arm64/v8.2",
        "linux/arm64/v8.1",
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
      ]);
    });

    it("accepts lower v9 revisions, then v8 up to v8.(x+5), then 32-bit arm", () => {
      assert.deepEqual(orderOf("linux/arm64/v9.1").slice(0, 9), [
        "linux/arm64/v9.1",
        "linux/arm64/v9",
        "linux/arm64/v8.6",
        "linux/arm64/v8.5",
        "linux/arm64/v8.4",
        "linux/arm64/v8.3",
        "linux/arm64/v8.2",
        "linux/arm64/v8.1",
        "linux/arm64",
      ]);
      // v8.(x+5) stops at v8.9, the last v8 revision.
      const v95 = orderOf("linux/arm64/v9.5");
      assert.equal(
        v95.find((text) => text.startsWith("linux/arm64/v8")),
        "linux/arm64/v8.9",
      );
      assert.equal(orderOf("linux/arm64/v9.1").at(-1), "linux/arm/v5");
    });

    it("does not accept a higher arm64 revision", () => {
      assert.equal(platformMatcher(p("linux/arm64")).matches(p("linux/arm64/v8.2")), false);
    });

    it("accepts only itself for an arm64 variant of unknown shape", () => {
      assert.deepEqual(orderOf("linux/arm64/v10"), ["linux/arm64/v10"]);
    });
  });

  describe("amd64 fallbacks", () => {
    it("accepts lower x86-64 levels, then 386", () => {
      assert.deepEqual(orderOf("linux/amd64/v3"), [
        "linux/amd64/v3",
        "linux/amd64/v2",
        "linux/amd64",
        "linux/386",
      ]);
      assert.deepEqual(orderOf("linux/amd64"), ["linux/amd64", "linux/386"]);
    });

    it("does not accept a higher level, nor amd64 when 386 is wanted", () => {
      assert.equal(platformMatcher(p("linux/amd64/v2")).matches(p("linux/amd64/v3")), false);
      assert.equal(platformMatcher(p("linux/386")).matches(p("linux/amd64")), false);
    });
  });

  describe("strict mode", () => {
    it("accepts only the wanted platform, refusing every fallback", () => {
      const matcher = platformMatcher(p("linux/arm64"), { strict: true });
      assert.deepEqual(matcher.order.map(formatPlatform), ["linux/arm64"]);
      assert.equal(matcher.matches(p("linux/arm/v7")), false);
      assert.equal(platformMatcher(p("linux/amd64"), { strict: true }).matches(p("linux/386")), false);
      assert.equal(platformMatcher(p("linux/arm/v7"), { strict: true }).matches(p("linux/arm/v6")), false);
    });

    it("still normalises, so aliases of the wanted platform match", () => {
      const matcher = platformMatcher(p("linux/arm64"), { strict: true });
      assert.equal(matcher.rank(p("linux/aarch64/v8")), 0);
    });
  });

  describe("os.version", () => {
    const wanted = p("windows/amd64", { "os.version": "10.0.17763.1234" });

    it("on windows, requires the same major.minor.build when both declare one", () => {
      const matcher = platformMatcher(wanted);
      assert.equal(matcher.matches(p("windows/amd64", { "os.version": "10.0.17763.5329" })), true);
      assert.equal(matcher.matches(p("windows/amd64", { "os.version": "10.0.20348.1" })), false);
    });

    it("on windows, ignores it when either side has no build number", () => {
      assert.equal(platformMatcher(wanted).matches(p("windows/amd64")), true);
      assert.equal(
        platformMatcher(p("windows/amd64")).matches(p("windows/amd64", { "os.version": "10.0.1.2" })),
        true,
      );
    });

    it("elsewhere, is ignored", () => {
      const linux = p("linux/amd64", { "os.version": "5.15" });
      assert.equal(platformMatcher(linux).matches(p("linux/amd64", { "os.version": "6.1" })), true);
    });
  });

  describe("os.features", () => {
    it("when wanted lists features, accepts candidates whose features are a subset", () => {
      const matcher = platformMatcher(p("windows/amd64", { "os.features": ["win32k", "gpu"] }));
      assert.equal(matcher.matches(p("windows/amd64", { "os.features": ["gpu"] })), true);
      assert.equal(matcher.matches(p("windows/amd64", { "os.features": ["gpu", "win32k"] })), true);
      assert.equal(matcher.matches(p("windows/amd64")), true);
      assert.equal(matcher.matches(p("windows/amd64", { "os.features": ["sse4"] })), false);
    });

    it("when wanted lists none, ignores the candidate's", () => {
      const matcher = platformMatcher(p("windows/amd64"));
      assert.equal(matcher.matches(p("windows/amd64", { "os.features": ["win32k"] })), true);
    });
  });

  describe("attestations", () => {
    it("never match, even when unknown/unknown is asked for", () => {
      assert.equal(platformMatcher(p("unknown/unknown")).matches(p("unknown/unknown")), false);
      assert.equal(platformMatcher(p("linux/amd64")).rank(p("unknown/unknown")), noMatchRank);
    });
  });

  describe("properties", () => {
    it("a matching platform still matches once normalised", () => {
      fc.assert(
        fc.property(arbPlatform, arbPlatform, fc.boolean(), (wanted, candidate, strict) => {
          const matcher = platformMatcher(wanted, { strict });
          if (matcher.matches(candidate)) assert.equal(matcher.matches(normalizePlatform(candidate)), true);
          assert.equal(matcher.rank(candidate), matcher.rank(normalizePlatform(candidate)));
        }),
      );
    });

    it("a platform matches itself and its normalised form with rank 0, unless it is unknown/unknown", () => {
      fc.assert(
        fc.property(arbPlatform, fc.boolean(), (platform, strict) => {
          const matcher = platformMatcher(platform, { strict });
          const expected = isAttestation(platform) ? noMatchRank : 0;
          assert.equal(matcher.rank(platform), expected);
          assert.equal(matcher.rank(normalizePlatform(platform)), expected);
        }),
      );
    });

    it("strict acceptance is exactly non-strict rank 0", () => {
      fc.assert(
        fc.property(arbPlatform, arbPlatform, (wanted, candidate) => {
          const strict = platformMatcher(wanted, { strict: true }).matches(candidate);
          assert.equal(strict, platformMatcher(wanted).rank(candidate) === 0);
        }),
      );
    });

    it("matches exactly when rank is finite", () => {
      fc.assert(
        fc.property(arbPlatform, arbPlatform, (wanted, candidate) => {
          const matcher = platformMatcher(wanted);
          assert.equal(matcher.matches(candidate), Number.isFinite(matcher.rank(candidate)));
        }),
      );
    });
  });
});

describe("selectPlatform", () => {
  const entry = (name: string, platform?: string) =>
    platform === undefined ? { name } : { name, platform: p(platform) };

  it("picks the best-ranked entry wherever it is in the list", () => {
    const entries = [entry("v5", "linux/arm/v5"), entry("v7", "linux/arm/v7"), entry("v6", "linux/arm/v6")];
    assert.equal(selectPlatform(entries, p("linux/arm/v7"))?.name, "v7");
    assert.equal(selectPlatform(entries, p("linux/arm/v6"))?.name, "v6");
  });

  it("falls back when the wanted platform is missing", () => {
    const entries = [entry("amd64", "linux/amd64"), entry("arm", "linux/arm/v7")];
    assert.equal(selectPlatform(entries, p("linux/arm64"))?.name, "arm");
  });

  it("picks the first of equally ranked entries", () => {
    const entries = [
      entry("first", "linux/amd64"),
      entry("second", "linux/x86_64"),
      entry("third", "linux/amd64"),
    ];
    assert.equal(selectPlatform(entries, p("linux/amd64"))?.name, "first");
  });

  it("never picks an attestation or an entry without a platform", () => {
    const entries = [
      entry("no platform"),
      entry("attestation", "unknown/unknown"),
      entry("image", "linux/amd64"),
    ];
    assert.equal(selectPlatform(entries, p("linux/amd64"))?.name, "image");
    assert.equal(selectPlatform(entries, p("unknown/unknown")), undefined);
  });

  it("returns undefined when nothing matches", () => {
    assert.equal(selectPlatform([entry("amd64", "linux/amd64")], p("linux/arm64")), undefined);
    assert.equal(selectPlatform([], p("linux/amd64")), undefined);
  });

  it("in strict mode, refuses fallbacks", () => {
    const entries = [entry("arm", "linux/arm/v7")];
    assert.equal(selectPlatform(entries, p("linux/arm64"), { strict: true }), undefined);
  });

  it("agrees with the matcher's lowest rank (property)", () => {
    fc.assert(
      fc.property(fc.array(arbPlatform, { maxLength: 8 }), arbPlatform, (platforms, wanted) => {
        const entries = platforms.map((platform, index) => ({ index, platform }));
        const matcher = platformMatcher(wanted);
        const chosen = selectPlatform(entries, wanted);
        const ranks = platforms.map((platform) => matcher.rank(platform));
        const best = Math.min(...ranks, noMatchRank);
        if (best === noMatchRank) assert.equal(chosen, undefined);
        else assert.equal(chosen?.index, ranks.indexOf(best));
      }),
    );
  });
});
