import type { Command } from "commander";
import type { CliContext } from "../context.ts";
import { openLayout } from "../open.ts";
import { examples } from "../options.ts";
import { writeJson, writeLines } from "../output.ts";

export function registerTags(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("tags")
    .description("list the tag names of a layout (ref.name and containerd image names)")
    .argument("<layout>", "layout directory (PATH or oci-layout://PATH)")
    .action(async (input: string, _options: object, self: Command) => {
      const context = contextOf(self);
      const tags = await (await openLayout(input, context)).tags();
      if (context.format === "json") writeJson(context, tags);
      else writeLines(context, tags);
    });
  examples(command, ["roci tags ./layout"]);
}
