import type { Command } from "commander";
import { selectImage } from "../../image/select.ts";
import { fetchBytes } from "../../store/fetch-bytes.ts";
import type { CliContext } from "../context.ts";
import { openReference } from "../open.ts";
import {
  examples,
  type PlatformFlags,
  platformFlags,
  platformOption,
  strictPlatformOption,
} from "../options.ts";
import { writeRaw } from "../output.ts";

export function registerManifest(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("manifest")
    .description(
      "print the exact bytes of the manifest (or index) a reference resolves to; with --platform, that platform's manifest",
    )
    .argument("<ref>", "image reference")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .action(async (input: string, options: PlatformFlags, self: Command) => {
      const context = contextOf(self);
      const { store, selector } = await openReference(input, context);
      const resolved = await store.resolve(selector);
      if (options.platform === undefined) {
        await writeRaw(context, await fetchBytes(store, resolved));
      } else {
        await writeRaw(context, (await selectImage(store, resolved, platformFlags(options))).manifest.raw);
      }
    });
  examples(command, [
    "roci manifest ./layout:v1 | jq .",
    "roci manifest --platform linux/amd64 ./layout:multi | sha256sum",
  ]);
}
