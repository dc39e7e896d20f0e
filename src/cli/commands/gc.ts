import type { Command } from "commander";
import { RociError } from "../../errors.ts";
import { collectGarbage, planGarbage } from "../../store/gc.ts";
import { LayoutReader } from "../../store/layout-reader.ts";
import type { CliContext } from "../context.ts";
import { openWritable } from "../destination.ts";
import { openLayout } from "../open.ts";
import { examples } from "../options.ts";
import { humanBytes, table, writeJson, writeLines } from "../output.ts";

export function registerGc(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("gc")
    .description(
      "delete blobs nothing in index.json reaches (through indexes, manifests and referrers), once older " +
        "than a grace period so a concurrent writer's fresh blobs survive; also stale temp files",
    )
    .argument("<layout>", "layout directory")
    .option("--dry-run", "list what would go and the bytes it would reclaim; delete nothing")
    .option("--grace <duration>", "keep unreachable blobs younger than this (e.g. 30s, 10m, 1h, 0)", "1h")
    .action(async (input: string, options: { dryRun?: boolean; grace: string }, self: Command) => {
      const context = contextOf(self);
      const graceMs = parseDuration(options.grace);
      const layout = await openLayout(input, context);
      if (!(layout instanceof LayoutReader)) {
        throw new RociError("USAGE", `${input}: gc works on layout directories, not archives`, {
          subject: input,
        });
      }
      const report = options.dryRun
        ? await planGarbage(layout, { graceMs })
        : await collectGarbage(await openWritable(layout.location, context, "gc"), { graceMs });
      if (context.format === "json") return writeJson(context, report);
      const verb = report.dryRun ? "would remove" : "removed";
      writeLines(context, [
        ...table(report.removed.map((blob) => [`${verb}`, blob.digest, humanBytes(blob.size)])),
        ...report.tempFiles.map((file) => `${verb} temp file ${file}`),
        `${report.location}: ${report.reachable} reachable, ${verb} ${report.removed.length} blobs ` +
          `(${humanBytes(report.bytesReclaimed)}), kept ${report.young.length} younger than ${options.grace}`,
      ]);
    });
  examples(command, ["roci gc --dry-run ./layout", "roci gc --grace 0 ./layout   # no concurrent writers"]);
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) {
    throw new RociError(
      "USAGE",
      `invalid duration "${text}": expected a number and a unit (ms, s, m, h, d), e.g. 30m`,
      {
        subject: text,
      },
    );
  }
  return Number(match[1]) * units[match[2] ?? "s"]!;
}
