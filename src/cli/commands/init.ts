import type { Command } from "commander";
import { LayoutStore } from "../../store/layout-store.ts";
import type { CliContext } from "../context.ts";
import { refuseIfReadOnly, storeOptions } from "../destination.ts";
import { examples } from "../options.ts";
import { writeJson, writeLines } from "../output.ts";

export function registerInit(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("init")
    .description("create an empty OCI layout (oci-layout, index.json, blobs/)")
    .argument("<dir>", "directory to create; it must be missing or empty")
    .option("--force", "also in a non-empty directory or an existing layout: files and images there are kept")
    .action(async (dir: string, options: { force?: boolean }, self: Command) => {
      const context = contextOf(self);
      refuseIfReadOnly(context, "init");
      const store = await LayoutStore.init(dir, { ...storeOptions(context), force: options.force ?? false });
      if (context.format === "json") writeJson(context, { layout: store.location });
      else writeLines(context, [`initialised OCI layout ${store.location}`]);
    });
  examples(command, ["roci init ./out", "roci init --force ./existing-dir"]);
}
