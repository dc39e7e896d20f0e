import type { Command } from "commander";
import { parseEntryName } from "../../store/naming.ts";
import type { CliContext } from "../context.ts";
import { openWritable } from "../destination.ts";
import { openReference } from "../open.ts";
import { examples } from "../options.ts";
import { writeJson, writeLines } from "../output.ts";

export function registerTag(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("tag")
    .description(
      "give an image in a layout more names; a name moves from wherever it was. A full reference " +
        "(registry/repo:tag) also sets io.containerd.image.name, as buildkit and containerd do",
    )
    .argument("<src-ref>", "the image: LAYOUT:TAG or LAYOUT@DIGEST")
    .argument("<new-tag...>", "tags (v2) or full references (example.com/app:2.0)")
    .action(async (input: string, tags: string[], _options: object, self: Command) => {
      const context = contextOf(self);
      const names = tags.map(parseEntryName);
      const { store: reader, selector } = await openReference(input, context);
      const store = await openWritable(reader.location, context, "tag");
      const descriptor = await store.resolve(selector);
      await store.tag(descriptor, names);
      if (context.format === "json")
        writeJson(context, { layout: store.location, digest: descriptor.digest, tags });
      else writeLines(context, [`tagged ${descriptor.digest} in ${store.location}: ${tags.join(", ")}`]);
    });
  examples(command, ["roci tag ./out:v1 v1.0 latest", "roci tag ./out@sha256:… example.com/team/app:2.0"]);
}
