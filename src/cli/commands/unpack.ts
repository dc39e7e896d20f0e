import type { Command } from "commander";
import { unpackImage } from "../../layer/unpack.ts";
import type { CliContext } from "../context.ts";
import { refuseIfReadOnly } from "../destination.ts";
import { openImage } from "../open.ts";
import { examples, type PlatformFlags, platformOption, strictPlatformOption } from "../options.ts";
import { humanBytes, writeJson, writeLines } from "../output.ts";
import { progressLine } from "../progress.ts";

interface UnpackFlags extends PlatformFlags {
  rootless?: boolean;
  force?: boolean;
  bundle?: boolean;
}

export function registerUnpack(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("unpack")
    .description(
      "apply an image's layers into a directory (whiteouts, opaque directories, hard links; nothing " +
        "written outside it), verifying each layer's digest and diff_id; a failed unpack leaves " +
        ".roci-unpack-incomplete behind",
    )
    .argument("<ref>", "the image: LAYOUT[:TAG][@DIGEST]")
    .argument("<dir>", "the target directory: created, and it must be empty unless --force")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .option(
      "--rootless",
      "no chown, no device nodes, as an unprivileged user would (automatic when not root)",
    )
    .option("--bundle", "write an OCI runtime bundle: DIR/rootfs and DIR/config.json, as umoci does")
    .option("--force", "unpack into a non-empty directory")
    .action(async (input: string, dir: string, options: UnpackFlags, self: Command) => {
      const context = contextOf(self);
      refuseIfReadOnly(context, "unpack");
      const { store, image, config } = await openImage(input, context, options);
      const progress = progressLine(context);
      const result = await unpackImage(store, image.manifest.value, config.value, dir, {
        rootless: options.rootless,
        force: options.force,
        bundle: options.bundle,
        onWarning: context.warn,
        onProgress: ({ layer, layers, bytes }) =>
          progress.update(`unpacking: layer ${layer}/${layers}, ${humanBytes(bytes)}`),
      });
      progress.done();
      if (context.format === "json") writeJson(context, { digest: image.descriptor.digest, ...result });
      else
        writeLines(context, [
          `unpacked ${image.descriptor.digest} into ${result.rootfs}: ${result.layers} layers, ${humanBytes(result.bytes)}` +
            (result.rootless ? " (rootless)" : ""),
        ]);
    });
  examples(command, [
    "roci unpack ./layout:v1 ./rootfs",
    "roci unpack --platform linux/arm64 --bundle ./layout:multi ./bundle",
  ]);
}
