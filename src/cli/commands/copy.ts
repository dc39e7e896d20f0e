import type { Command } from "commander";
import { copyToArchive } from "../../archive/copy-to-archive.ts";
import { type CopyOptions, type CopyResult, copyImage } from "../../copy/copy.ts";
import { RociError } from "../../errors.ts";
import { parsePlatform } from "../../spec/platform.ts";
import { LayoutStore } from "../../store/layout-store.ts";
import { formatEntryName, parseEntryName, refuseTaken } from "../../store/naming.ts";
import type { CliContext } from "../context.ts";
import { parseDestination, refuseIfReadOnly, storeOptions } from "../destination.ts";
import { openReference } from "../open.ts";
import { examples, strictPlatformOption } from "../options.ts";
import { humanBytes, writeJson, writeLines } from "../output.ts";
import { progressLine } from "../progress.ts";

interface CopyFlags {
  platform: string[];
  strictPlatform?: boolean;
  /** Commander's name for --no-clobber: false when given. */
  clobber: boolean;
  jobs: string;
  trustLinks?: boolean;
}

export function registerCopy(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("copy")
    .alias("cp")
    .description(
      "copy an image into a layout (created if missing): only the blobs it needs, skipping those the " +
        "destination has; hard links or reflinks on the same filesystem, a verified stream otherwise",
    )
    .argument("<src>", "the image: LAYOUT[:TAG][@DIGEST] (read-only, never written)")
    .argument(
      "<dst>",
      "where to: DIR[:TAG[,TAG…]], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG] (default: the source's tag)",
    )
    .option(
      "--platform <os/arch[/variant]|all>",
      "copy only this platform of an index; repeat for several (a new index), or all (default)",
      (value: string, previous: string[]) => [...previous, value],
      [],
    )
    .addOption(strictPlatformOption())
    .option("--no-clobber", "fail (exit 6) instead of moving a tag that already names another image")
    .option("-j, --jobs <n>", "blobs copied at once", "4")
    .option(
      "--trust-links",
      "take hard-linked read-only source blobs on their size alone, without hashing them (fastest; a " +
        "corrupt source then lands corrupt, and `roci verify` or any reader reports it)",
    )
    .action(async (sourceInput: string, destinationInput: string, options: CopyFlags, self: Command) => {
      const context = contextOf(self);
      refuseIfReadOnly(context, "copy");
      const destination = parseDestination(destinationInput);
      const { store: source, selector } = await openReference(sourceInput, context);
      const root = await source.resolve(selector);
      const names =
        destination.names.length > 0 || selector.tag === undefined
          ? destination.names
          : [parseEntryName(selector.tag)];
      const jobs = Number.parseInt(options.jobs, 10);
      if (!Number.isInteger(jobs) || jobs < 1)
        throw new RociError("USAGE", `--jobs ${options.jobs}: expected a whole number ≥ 1`);
      const all = options.platform.length === 0 || options.platform.includes("all");
      const progress = progressLine(context);
      let total = 0;
      const copyOptions: CopyOptions = {
        platforms: all ? "all" : options.platform.map(parsePlatform),
        strictPlatform: options.strictPlatform ?? false,
        concurrency: jobs,
        trustLinks: options.trustLinks ?? false,
        onEvent: (event) => {
          if (event.type === "plan") total = event.bytes;
          else
            progress.update(
              `copying: ${event.blobsDone} blobs, ${humanBytes(event.bytesDone)} of ${humanBytes(total)}`,
            );
        },
      };
      let location: string;
      let result: CopyResult;
      if (destination.kind === "layout") {
        const store = await LayoutStore.openOrInit(destination.path, storeOptions(context));
        // Checked before copying (fail fast) and again under the index lock (no race).
        if (!options.clobber)
          refuseTaken((await store.index()).manifests, names, root.digest, store.location);
        result = await copyImage(source, root, store, copyOptions);
        if (names.length > 0) await store.tag(result.root, names, { noClobber: !options.clobber });
        else
          await store.updateIndex((manifests) => {
            if (!manifests.some((entry) => entry.digest === result.root.digest)) manifests.push(result.root);
          });
        location = store.location;
      } else {
        result = await copyToArchive(source, root, destination.path, {
          ...copyOptions,
          format: destination.kind === "docker-archive" ? "docker" : "oci",
          names,
          onDebug: storeOptions(context).onDebug,
        });
        location = `${destination.kind}:${destination.path}`;
      }
      progress.done();

      const tags = names.map(formatEntryName);
      if (context.format === "json") {
        writeJson(context, {
          source: sourceInput,
          destination: location,
          digest: result.root.digest,
          tags,
          ...result,
        });
        return;
      }
      const { linked, copied, exists } = result.outcomes;
      writeLines(context, [
        `copied ${result.root.digest} to ${location}${tags.length ? ` as ${tags.join(", ")}` : " (untagged)"}: ` +
          `${result.blobs} blobs, ${humanBytes(result.bytes)} (${linked} linked, ${copied} copied, ${exists} already there)`,
      ]);
    });
  examples(command, [
    "roci copy ./build/layout:v1 ./release:v1,latest",
    "roci copy --platform linux/arm64 oci-layout://./multi:app ./arm-only:app",
    "roci copy --no-clobber ./src@sha256:… ./dst:stable",
    "roci copy ./layout:v1 oci-archive:image.tar:v1",
    "roci copy ./layout:v1 docker-archive:image.tar:example.com/app:v1   # docker load -i image.tar",
  ]);
}
