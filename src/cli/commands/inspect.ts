import type { Command } from "commander";
import { type InspectResult, inspectImage } from "../../image/inspect.ts";
import type { CliContext } from "../context.ts";
import { openReference } from "../open.ts";
import {
  examples,
  type PlatformFlags,
  platformFlags,
  platformOption,
  strictPlatformOption,
} from "../options.ts";
import { humanBytes, table, writeJson, writeLines } from "../output.ts";

export function registerInspect(program: Command, contextOf: (command: Command) => CliContext): void {
  const command = program
    .command("inspect")
    .description("show what a reference resolves to: digest, platforms, config summary, layers, total size")
    .argument("<ref>", "image reference, e.g. ./layout:v1, oci-layout://PATH[:TAG][@DIGEST], oci:PATH:TAG")
    .addOption(platformOption())
    .addOption(strictPlatformOption())
    .action(async (input: string, options: PlatformFlags, self: Command) => {
      const context = contextOf(self);
      const { store, selector } = await openReference(input, context);
      const result = await inspectImage(store, selector, platformFlags(options));
      if (context.format === "json") writeJson(context, result);
      else writeLines(context, render(input, result));
    });
  examples(command, [
    "roci inspect ./layout:v1",
    "roci inspect --platform linux/arm64/v8 oci-layout://./layout:multi",
    "roci inspect --format json ./layout@sha256:… | jq .config.env",
  ]);
}

function render(input: string, result: InspectResult): string[] {
  const { config } = result;
  const json = (value: unknown) => JSON.stringify(value);
  const lines = [
    `Reference:   ${input}`,
    `Digest:      ${result.resolved.digest}`,
    `Media type:  ${result.resolved.mediaType}`,
  ];
  if (result.platforms) {
    lines.push("Platforms:");
    const rows = result.platforms.map((entry) => [
      `  ${entry.platform ?? "-"}`,
      entry.digest,
      entry.attestation ? "(attestation)" : "",
    ]);
    lines.push(...table(rows));
    lines.push(`Manifest:    ${result.manifest.digest}`);
  }
  lines.push(
    `Platform:    ${result.manifest.platform}`,
    `Config:      ${config.digest}`,
    ...optional("  Created:     ", config.created),
    ...optional("  Author:      ", config.author),
    ...optional("  Entrypoint:  ", config.entrypoint && json(config.entrypoint)),
    ...optional("  Cmd:         ", config.cmd && json(config.cmd)),
    ...optional("  WorkingDir:  ", config.workingDir),
    ...optional("  User:        ", config.user),
    ...optional("  Ports:       ", config.exposedPorts?.join(", ")),
    ...optional("  StopSignal:  ", config.stopSignal),
  );
  if (config.env?.length) lines.push("  Env:", ...config.env.map((entry) => `    ${entry}`));
  const labels = Object.entries(config.labels ?? {});
  if (labels.length) lines.push("  Labels:", ...labels.map(([key, value]) => `    ${key}=${value}`));
  lines.push(`Layers:      ${result.layers.length}`);
  lines.push(
    ...table(result.layers.map((layer) => [`  ${layer.digest}`, humanBytes(layer.size), layer.mediaType])),
  );
  lines.push(`Total size:  ${humanBytes(result.totalSize)} (${result.totalSize} bytes)`);
  return lines;
}

function optional(label: string, value: string | undefined): string[] {
  return value ? [`${label}${value}`] : [];
}
