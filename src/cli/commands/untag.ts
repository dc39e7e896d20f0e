import type { Command } from "commander";
import { RociError } from "../../errors.ts";
import { parseEntryName } from "../../store/naming.ts";
import type { CliContext } from "../context.ts";
import { openWritable, parseDestination } from "../destination.ts";
import { examples } from "../options.ts";
import { writeJson, writeLines } from "../output.ts";

export function registerUntag(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("untag")
    .description("remove a name from a layout; the image's blobs stay until `roci gc`")
    .argument("<layout-ref>", "LAYOUT:TAG, or LAYOUT with --name")
    .option("--name <name>", "the name to remove, when it is a full reference (example.com/app:1.0)")
    .action(async (input: string, options: { name?: string }, self: Command) => {
      const context = contextOf(self);
      const destination = parseDestination(input);
      const names = options.name ? [parseEntryName(options.name)] : destination.names;
      if (names.length === 0) {
        throw new RociError("USAGE", `${input}: name the tag to remove, as LAYOUT:TAG`, { subject: input });
      }
      const store = await openWritable(destination.path, context, "untag");
      for (const name of names) await store.untag(name);
      const removed = names.map((name) => name.containerdName ?? name.refName);
      if (context.format === "json") writeJson(context, { layout: store.location, removed });
      else writeLines(context, [`untagged in ${store.location}: ${removed.join(", ")}`]);
    });
  examples(command, ["roci untag ./out:v1", "roci untag ./out --name example.com/app:1.0"]);
}
