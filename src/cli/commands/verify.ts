import type { Command } from "commander";
import { RociError } from "../../errors.ts";
import { type VerifyReport, verifyLayout } from "../../image/verify.ts";
import type { CliContext } from "../context.ts";
import { openReference } from "../open.ts";
import { examples } from "../options.ts";
import { humanBytes, table, writeJson, writeLines } from "../output.ts";
import { progressLine } from "../progress.ts";

export function registerVerify(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("verify")
    .alias("validate")
    .description(
      "check everything reachable: documents valid, every blob present with the right size and digest. " +
        "Given a whole layout, also lists unreferenced blobs. Exits 0 only when nothing is wrong (5 otherwise).",
    )
    .argument("<ref|layout>", "an image (PATH:TAG, PATH@DIGEST) or a whole layout (PATH)")
    .action(async (input: string, _options: object, self: Command) => {
      const context = contextOf(self);
      const { store, selector } = await openReference(input, context);
      const wholeLayout = selector.tag === undefined && selector.digest === undefined;
      const roots = wholeLayout ? (await store.index()).manifests : [await store.resolve(selector)];
      const progress = progressLine(context);
      const report = await verifyLayout(store, roots, {
        reportUnreferenced: wholeLayout,
        onProgress: ({ blobsDone, bytesDone }) =>
          progress.update(`verifying: ${blobsDone} blobs, ${humanBytes(bytesDone)}`),
      });
      progress.done();
      if (context.format === "json") writeJson(context, report);
      else writeLines(context, render(report));
      if (!report.ok) {
        const errors = report.problems.filter((problem) => problem.severity === "error").length;
        throw new RociError(
          "VERIFY_FAILED",
          `${store.location}: verification failed with ${errors} problem(s)`,
          {
            subject: store.location,
          },
        );
      }
    });
  examples(command, [
    "roci verify ./layout            # every image, every blob, and unreferenced blobs",
    "roci verify ./layout:v1         # only what v1 reaches",
    "roci verify --format json ./layout | jq '.problems[] | select(.severity==\"error\")'",
  ]);
}

function render(report: VerifyReport): string[] {
  const rows = report.problems.map((problem) => [
    problem.severity.toUpperCase(),
    problem.kind,
    problem.message,
  ]);
  const errors = report.problems.filter((problem) => problem.severity === "error").length;
  const warnings = report.problems.length - errors;
  return [
    ...table(rows),
    `${report.ok ? "ok" : "FAILED"}: ${report.location}: ${report.verifiedBlobs} blobs verified ` +
      `(${humanBytes(report.verifiedBytes)}), ${errors} error(s), ${warnings} warning(s)`,
  ];
}
