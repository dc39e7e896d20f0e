/**
 * The `roci` command: parses flags, calls the library, prints text or JSON. Data goes to stdout,
 * messages to stderr; every failure maps to a documented exit status.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { ExitCode, isRociError, RociError } from "../errors.ts";
import type { CliContext, GlobalOptions } from "./context.ts";

type Register = (program: Command, contextOf: (command: Command) => CliContext) => void;

/**
 * Every command, loaded on demand: a run loads only the module of the command it runs (a CLI
 * called from scripts and build rules pays its startup every time), `--help` loads them all.
 */
const commands: ReadonlyArray<{ names: readonly string[]; load: () => Promise<Register> }> = [
  { names: ["ls"], load: async () => (await import("./commands/ls.ts")).registerLs },
  { names: ["tags"], load: async () => (await import("./commands/tags.ts")).registerTags },
  { names: ["inspect"], load: async () => (await import("./commands/inspect.ts")).registerInspect },
  { names: ["digest"], load: async () => (await import("./commands/digest.ts")).registerDigest },
  { names: ["manifest"], load: async () => (await import("./commands/manifest.ts")).registerManifest },
  { names: ["config"], load: async () => (await import("./commands/config.ts")).registerConfig },
  { names: ["blob"], load: async () => (await import("./commands/blob.ts")).registerBlob },
  { names: ["verify", "validate"], load: async () => (await import("./commands/verify.ts")).registerVerify },
  { names: ["init"], load: async () => (await import("./commands/init.ts")).registerInit },
  { names: ["tag"], load: async () => (await import("./commands/tag.ts")).registerTag },
  { names: ["untag"], load: async () => (await import("./commands/untag.ts")).registerUntag },
  { names: ["copy", "cp"], load: async () => (await import("./commands/copy.ts")).registerCopy },
  { names: ["gc"], load: async () => (await import("./commands/gc.ts")).registerGc },
  { names: ["unpack"], load: async () => (await import("./commands/unpack.ts")).registerUnpack },
  { names: ["export"], load: async () => (await import("./commands/export.ts")).registerExport },
  { names: ["layer"], load: async () => (await import("./commands/layer.ts")).registerLayer },
];

/** The commands a run needs: the one named first on the command line, or all of them. */
function commandsFor(argv: readonly string[]): typeof commands {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--format") i++; // its value
    if (arg.startsWith("-")) continue;
    const named = commands.find((command) => command.names.includes(arg));
    return named ? [named] : commands;
  }
  return commands;
}

const exitCodesHelp = `
Exit status:
  0    ok
  1    error
  2    usage (bad flag, argument, reference or digest)
  3    not found (layout, tag, blob, platform)
  4    authentication
  5    verification failed (corrupt or missing content, invalid layout or document)
  6    conflict or lock
  130  interrupted

Inputs are never written: a layout is read with stat, open(O_RDONLY) and read only, so read-only
mounts and chmod a-w trees work for any user. --read-only (or ROCI_READ_ONLY=1) additionally makes
commands that would write refuse before they start.

References:
  PATH | oci-layout://PATH[:TAG][@DIGEST] | oci:PATH[:TAG] | ocidir://PATH[:TAG][@DIGEST]
  A digest wins (index.json is then not read); no tag means "latest", or the only entry.
`;

function packageVersion(): string {
  const raw = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(raw) as { version: string }).version;
}

export async function createProgram(
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
  argv: readonly string[] = [],
): Promise<Command> {
  const program = new Command("roci")
    .description("OCI image layouts: read without ever writing to them; inspect, verify, copy, tag, gc")
    .version(packageVersion(), "-V, --version")
    .addOption(
      new Option("--format <format>", "output for commands that print a model")
        .choices(["text", "json"])
        .default("text"),
    )
    .option("--read-only", "refuse any command that would write to an input (also: ROCI_READ_ONLY=1)")
    .option("--debug", "show stack traces and debug messages")
    .addHelpText("after", exitCodesHelp)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Usage errors are reported by main() in roci's own format (and as JSON with --format json).
      outputError: () => {},
    });

  const contextOf = (command: Command): CliContext => {
    const options = command.optsWithGlobals<Partial<GlobalOptions>>();
    const readOnlyEnv = process.env.ROCI_READ_ONLY;
    return {
      format: options.format ?? "text",
      readOnly:
        options.readOnly === true || (readOnlyEnv !== undefined && readOnlyEnv !== "" && readOnlyEnv !== "0"),
      debug: options.debug ?? false,
      stdout: io.stdout as CliContext["stdout"],
      warn: (message) => io.stderr.write(`roci: warning: ${message}\n`),
      interactive: (io.stderr as { isTTY?: boolean }).isTTY === true && !process.env.CI,
    };
  };

  for (const register of await Promise.all(commandsFor(argv).map((command) => command.load()))) {
    register(program, contextOf);
  }
  for (const command of program.commands) command.exitOverride().configureOutput(program.configureOutput());
  return program;
}

/** Runs the CLI and returns the exit status (it never calls process.exit itself). */
export async function main(
  argv: readonly string[],
  io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const program = await createProgram(io, argv);
  const debug = argv.includes("--debug");
  const jsonErrors = argv.some(
    (arg, i) => arg === "--format=json" || (arg === "--format" && argv[i + 1] === "json"),
  );
  try {
    await program.parseAsync([...argv], { from: "user" });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError && error.exitCode === 0) return ExitCode.ok;
    const commands = new Set(program.commands.flatMap((command) => [command.name(), ...command.aliases()]));
    const failure = isRociError(error)
      ? error
      : asRociError(
          error,
          argv.find((arg) => commands.has(arg)),
        );
    if (jsonErrors) {
      const { code, message, hint, subject } = failure;
      io.stderr.write(`${JSON.stringify({ error: { code, message, hint, subject } })}\n`);
    } else {
      io.stderr.write(`roci: error [${failure.code}]: ${failure.message}\n`);
      if (failure.hint) io.stderr.write(`  hint: ${failure.hint}\n`);
    }
    if (debug || failure.code === "INTERNAL")
      io.stderr.write(`${(failure.cause as Error)?.stack ?? failure.stack}\n`);
    return failure.exitCode;
  }
}

/** Commander's usage errors ("error: unknown option '--frob'\n(Did you mean …?)") as USAGE errors. */
function asRociError(error: unknown, command: string | undefined): RociError {
  if (!(error instanceof CommanderError)) {
    return new RociError("INTERNAL", error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
  const [first = "", ...rest] = error.message.split("\n");
  const suggestion = rest.join(" ").replace(/^\((.*)\)$/, "$1");
  return new RociError("USAGE", first.replace(/^error: /, ""), {
    cause: error,
    hint: suggestion || `run roci ${command ? `${command} ` : ""}--help for usage`,
  });
}
