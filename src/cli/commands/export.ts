import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { RociError } from "../../errors.ts";
import { exportImage } from "../../layer/flatten.ts";
import type { CliContext } from "../context.ts";
import { openImage } from "../open.ts";
import { examples, type PlatformFlags, platformOption, strictPlatformOption } from "../options.ts";
import { progressLine } from "../progress.ts";

export function registerExport(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("export")
    .description(
      "write an image's flattened filesystem (whiteouts applied) as one tar, streamed; layers are verified as they " +
        "are read, so a corrupt one stops the tar midway with exit 5 (use -o FILE to get no file at all then)",
    )
    .argument("<ref>", "the image: LAYOUT[:TAG][@DIGEST]")
    .option("-o, --output <file>", "where to write the tar; - for stdout (default)", "-")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .action(async (input: string, options: PlatformFlags & { output: string }, self: Command) => {
      const context = contextOf(self);
      const { store, image, config } = await openImage(input, context, options);
      // Every layer must be there before the first byte goes out: a missing one is found now, not
      // after half a tar has reached a pipe.
      for (const layer of image.manifest.value.layers) {
        if (!(await store.exists(layer))) {
          throw new RociError("BLOB_MISSING", `layer ${layer.digest}: missing from ${store.location}`, {
            subject: layer.digest,
          });
        }
      }
      const progress = progressLine(context);
      const tar = exportImage(store, image.manifest.value, config.value, (layer, layers) =>
        progress.update(`exporting: layer ${layer}/${layers}`),
      );
      if (options.output === "-") {
        await pipeline(tar, context.stdout, { end: false });
      } else {
        // Written under a temp name and renamed: a failed export never leaves a valid-looking tar.
        const temp = `${options.output}.${randomBytes(6).toString("hex")}.partial`;
        try {
          await pipeline(tar, createWriteStream(temp, { flags: "wx" }));
          await rename(temp, options.output);
        } catch (error) {
          await rm(temp, { force: true });
          throw error;
        }
      }
      progress.done();
    });
  examples(command, [
    "roci export ./layout:v1 -o rootfs.tar",
    "roci export --platform linux/arm64 ./layout:multi | tar -t",
  ]);
}
