#!/usr/bin/env node
/** The `roci` executable. Everything but process wiring lives in program.ts, which tests call directly. */
import { setFlagsFromString } from "node:v8";

// A larger young generation: parsing a big index.json otherwise spends a fifth of its time in
// scavenges. Set before the program's modules load and allocate.
setFlagsFromString("--max-semi-space-size=32");

const { ExitCode } = await import("../errors.ts");
const { main } = await import("./program.ts");

// Writing to a closed pipe (`roci blob … | head`) is the reader's choice, not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
});
process.on("SIGINT", () => process.exit(ExitCode.interrupted));

process.exitCode = await main(process.argv.slice(2));
