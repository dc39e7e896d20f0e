import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { type Command, InvalidArgumentError, Option } from "commander";
import { RociError } from "../../errors.ts";
import type { Compression } from "../../layer/compression.ts";
import { walkDirectory } from "../../layer/walk.ts";
import { writeLayer } from "../../layer/write-layer.ts";
import type { CliContext } from "../context.ts";
import { examples } from "../options.ts";
import { writeJson } from "../output.ts";

interface CreateFlags {
  output: string;
  compression: Compression;
  level?: number;
  sourceDateEpoch?: string;
  timestamps: "pin" | "clamp";
  ownership: "keep" | "root";
  xattrs?: boolean;
}

export function registerLayer(program: Command, contextOf: (command: Command) => CliContext): void {
  const layer = program.command("layer").description("make and read single layers");
  const create = layer
    .command("create")
    .description(
      "write a directory tree as a reproducible layer (sorted, parents first, hard links detected, " +
        "normalised gzip header) and print its descriptor and diff_id as JSON",
    )
    .argument("<dir>", "the directory to archive (its contents, not itself)")
    .requiredOption("-o, --output <file>", "the layer blob to write")
    .addOption(
      new Option("--compression <kind>", "layer compression")
        .choices(["gzip", "zstd", "none"])
        .default("gzip"),
    )
    .option("--level <n>", "compression level: gzip 1-9 (default 6), zstd 1-19 (default 3)", parseLevel)
    .option(
      "--source-date-epoch <seconds>",
      "entry times from this instant (default: $SOURCE_DATE_EPOCH when set)",
    )
    .addOption(
      new Option("--timestamps <mode>", "with an epoch: pin every time to it, or clamp (keep older times)")
        .choices(["pin", "clamp"])
        .default("pin"),
    )
    .addOption(
      new Option("--ownership <mode>", "keep the files' uid/gid, or root (0:0)")
        .choices(["keep", "root"])
        .default("keep"),
    )
    .option("--xattrs", "record extended attributes (they vary by host, so off by default)")
    .action(async (dir: string, options: CreateFlags, self: Command) => {
      const context = contextOf(self);
      const epochText = options.sourceDateEpoch ?? process.env.SOURCE_DATE_EPOCH;
      const sourceDateEpoch = epochText === undefined || epochText === "" ? undefined : Number(epochText);
      if (sourceDateEpoch !== undefined && !Number.isSafeInteger(sourceDateEpoch)) {
        throw new RociError("USAGE", `source date epoch "${epochText}": expected whole seconds since 1970`);
      }
      const entries = await walkDirectory(dir, {
        ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }),
        timestamps: options.timestamps,
        ownership: options.ownership,
        xattrs: options.xattrs ?? false,
      });
      const temp = `${options.output}.${randomBytes(6).toString("hex")}.partial`;
      try {
        const written = await writeLayer(entries, createWriteStream(temp, { flags: "wx" }), {
          compression: options.compression,
          ...(options.level === undefined ? {} : { level: options.level }),
        });
        await rename(temp, options.output);
        writeJson(context, { ...written, file: options.output, entries: entries.length });
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
    });
  examples(create, [
    "roci layer create ./rootfs -o layer.tar.gz",
    "SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) roci layer create --ownership root ./app -o app.tar.gz",
  ]);
}

function parseLevel(text: string): number {
  const level = Number(text);
  if (!Number.isInteger(level) || level < 1 || level > 19) {
    throw new InvalidArgumentError("expected a whole number: gzip 1-9, zstd 1-19");
  }
  return level;
}
