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

export function registerConfig(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("config")
    .description("print the exact bytes of an image's config (an index is narrowed by platform first)")
    .argument("<ref>", "image reference")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .action(async (input: string, options: PlatformFlags, self: Command) => {
      const context = contextOf(self);
      const { store, selector } = await openReference(input, context);
      const selected = await selectImage(store, await store.resolve(selector), platformFlags(options));
      await writeRaw(context, await fetchBytes(store, selected.manifest.value.config));
    });
  examples(command, [
    "roci config ./layout:v1 | jq .config.Env",
    "roci config --platform linux/arm64 ./layout:multi",
  ]);
}
