import type { Command } from "commander";
import { selectImage } from "../../image/select.ts";
import type { CliContext } from "../context.ts";
import { openReference } from "../open.ts";
import {
  examples,
  type PlatformFlags,
  platformFlags,
  platformOption,
  strictPlatformOption,
} from "../options.ts";
import { writeJson, writeLines } from "../output.ts";

export function registerDigest(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("digest")
    .description(
      "print the digest a reference resolves to; with --platform, the digest of that platform's manifest",
    )
    .argument("<ref>", "image reference, e.g. ./layout:v1 or oci-layout://PATH@sha256:…")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .action(async (input: string, options: PlatformFlags, self: Command) => {
      const context = contextOf(self);
      const { store, selector } = await openReference(input, context);
      let descriptor = await store.resolve(selector);
      if (options.platform !== undefined) {
        descriptor = (await selectImage(store, descriptor, platformFlags(options))).descriptor;
      }
      if (context.format === "json") {
        writeJson(context, {
          digest: descriptor.digest,
          mediaType: descriptor.mediaType,
          size: descriptor.size,
        });
      } else {
        writeLines(context, [descriptor.digest]);
      }
    });
  examples(command, [
    "roci digest ./layout:v1",
    "roci digest --platform linux/arm64 oci-layout://./layout:multi",
    "docker buildx build --build-context base=oci-layout://./layout@$(roci digest ./layout:v1) .",
  ]);
}
