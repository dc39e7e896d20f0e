#!/usr/bin/env node
/** The `roci` executable. Everything but process wiring lives in program.ts, which tests call directly. */
import { ExitCode } from "../errors.ts";
import { main } from "./program.ts";

// Writing to a closed pipe (`roci blob … | head`) is the reader's choice, not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
});
process.on("SIGINT", () => process.exit(ExitCode.interrupted));

process.exitCode = await main(process.argv.slice(2));
