/** Flags several commands share. */
import { type Command, Option } from "commander";
import type { Platform } from "../spec/documents.ts";
import { parsePlatform } from "../spec/platform.ts";

export function platformOption(): Option {
  return new Option(
    "--platform <os/arch[/variant]>",
    "narrow an image index to this platform (default: the host's)",
  );
}

export function strictPlatformOption(): Option {
  return new Option(
    "--strict-platform",
    "accept only an exact platform match, no fallbacks such as arm/v7 → arm/v6",
  );
}

export interface PlatformFlags {
  platform?: string;
  strictPlatform?: boolean;
}

export function platformFlags(options: PlatformFlags): { platform?: Platform; strict: boolean } {
  return {
    ...(options.platform === undefined ? {} : { platform: parsePlatform(options.platform) }),
    strict: options.strictPlatform ?? false,
  };
}

export function examples(command: Command, lines: readonly string[]): Command {
  return command.addHelpText("after", `\nExamples:\n${lines.map((line) => `  ${line}`).join("\n")}\n`);
}
