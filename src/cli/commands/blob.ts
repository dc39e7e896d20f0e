import type { Command } from "commander";
import { parseDigest } from "../../digest/digest.ts";
import type { CliContext } from "../context.ts";
import { openReference } from "../open.ts";
import { examples } from "../options.ts";
import { writeRaw } from "../output.ts";

export function registerBlob(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("blob")
    .description("print a blob's exact bytes, verified while streaming (exits non-zero if they are wrong)")
    .argument("<ref>", "the layout (a tag or digest in it is ignored)")
    .argument("<digest>", "the blob's digest, ALGORITHM:HEX")
    .action(async (input: string, digestText: string, _options: object, self: Command) => {
      const context = contextOf(self);
      const { digest } = parseDigest(digestText);
      const { store } = await openReference(input, context);
      await writeRaw(context, await store.fetch(await store.describeFile(digest)));
    });
  examples(command, [
    "roci blob ./layout sha256:3b18e5… | tar -tz",
    "roci blob ./layout $(roci inspect --format json ./layout:v1 | jq -r .config.digest)",
  ]);
}
