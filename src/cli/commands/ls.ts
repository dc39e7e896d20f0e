import type { Command } from "commander";
import { listLayout } from "../../image/list.ts";
import type { CliContext } from "../context.ts";
import { openLayout } from "../open.ts";
import { examples } from "../options.ts";
import { table, writeJson, writeLines } from "../output.ts";

export function registerLs(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("ls")
    .description("list every index.json entry of a layout: names, digest, media type, platforms")
    .argument("<layout>", "layout directory (PATH or oci-layout://PATH)")
    .action(async (input: string, _options: object, self: Command) => {
      const context = contextOf(self);
      const entries = await listLayout(await openLayout(input, context));
      if (context.format === "json") return writeJson(context, entries);
      const rows = entries.map((entry) => [
        entry.names.join(",") || "<untagged>",
        entry.digest,
        entry.mediaType,
        entry.platforms.join(",") || "-",
      ]);
      writeLines(context, table([["NAME", "DIGEST", "MEDIA TYPE", "PLATFORMS"], ...rows]));
    });
  examples(command, ["roci ls ./layout", "roci ls --format json oci-layout:///srv/images | jq '.[].names'"]);
}
