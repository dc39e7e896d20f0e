/**
 * One error class for everything roci reports. `code` is the stable, documented API: scripts and
 * library callers switch on it, and the CLI maps it to an exit status. Messages name the object
 * first (the path, reference or digest) and say what to do, in the style of containerd's errors.
 */
export type RociErrorCode =
  | "USAGE"
  | "INVALID_REFERENCE"
  | "INVALID_DIGEST"
  | "UNSUPPORTED_DIGEST"
  | "UNSUPPORTED_TRANSPORT"
  | "NOT_FOUND"
  | "TAG_NOT_FOUND"
  | "BLOB_MISSING"
  | "PLATFORM_NOT_FOUND"
  | "AMBIGUOUS_TAG"
  | "INVALID_LAYOUT"
  | "INVALID_DOCUMENT"
  | "DOCUMENT_TOO_LARGE"
  | "MANIFEST_CYCLE"
  | "DIGEST_MISMATCH"
  | "SIZE_MISMATCH"
  | "VERIFY_FAILED"
  | "CORRUPT_LAYER"
  | "CORRUPT_ARCHIVE"
  | "UNSUPPORTED_COMPRESSION"
  | "UNSAFE_PATH"
  | "READ_ONLY_INPUT"
  | "READ_ONLY"
  | "LOCKED"
  | "CONFLICT"
  | "IO"
  | "INTERRUPTED"
  | "INTERNAL";

/** Exit statuses of the CLI, one per class of failure (documented in `roci --help`). */
export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  auth: 4,
  verification: 5,
  conflict: 6,
  interrupted: 130,
} as const;

const exitByCode: Record<RociErrorCode, number> = {
  USAGE: ExitCode.usage,
  INVALID_REFERENCE: ExitCode.usage,
  INVALID_DIGEST: ExitCode.usage,
  UNSUPPORTED_DIGEST: ExitCode.verification,
  UNSUPPORTED_TRANSPORT: ExitCode.error,
  NOT_FOUND: ExitCode.notFound,
  TAG_NOT_FOUND: ExitCode.notFound,
  BLOB_MISSING: ExitCode.notFound,
  PLATFORM_NOT_FOUND: ExitCode.notFound,
  AMBIGUOUS_TAG: ExitCode.error,
  INVALID_LAYOUT: ExitCode.verification,
  INVALID_DOCUMENT: ExitCode.verification,
  DOCUMENT_TOO_LARGE: ExitCode.verification,
  MANIFEST_CYCLE: ExitCode.verification,
  DIGEST_MISMATCH: ExitCode.verification,
  SIZE_MISMATCH: ExitCode.verification,
  VERIFY_FAILED: ExitCode.verification,
  CORRUPT_LAYER: ExitCode.verification,
  CORRUPT_ARCHIVE: ExitCode.verification,
  UNSUPPORTED_COMPRESSION: ExitCode.error,
  UNSAFE_PATH: ExitCode.verification,
  READ_ONLY_INPUT: ExitCode.error,
  READ_ONLY: ExitCode.error,
  LOCKED: ExitCode.conflict,
  CONFLICT: ExitCode.conflict,
  IO: ExitCode.error,
  INTERRUPTED: ExitCode.interrupted,
  INTERNAL: ExitCode.error,
};

export interface RociErrorOptions {
  /** What to do about it, printed on its own line by the CLI. */
  hint?: string;
  cause?: unknown;
  /** The path, reference or digest the error is about, for JSON output. */
  subject?: string;
}

export class RociError extends Error {
  override readonly name = "RociError";
  readonly code: RociErrorCode;
  readonly hint: string | undefined;
  readonly subject: string | undefined;

  constructor(code: RociErrorCode, message: string, options: RociErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.subject = options.subject;
  }

  get exitCode(): number {
    return exitByCode[this.code];
  }
}

export function isRociError(error: unknown, code?: RociErrorCode): error is RociError {
  return error instanceof RociError && (code === undefined || error.code === code);
}

/** The errno codes that mean "this input cannot be written", whatever the reason. */
const readOnlyErrnos = new Set(["EROFS", "EACCES", "EPERM"]);

export function errnoOf(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

export function isReadOnlyErrno(error: unknown): boolean {
  const errno = errnoOf(error);
  return errno !== undefined && readOnlyErrnos.has(errno);
}

/**
 * Turns a Node filesystem error met while reading `path` into a RociError with a code a user can
 * act on. `what` says what the path is ("blob sha256:…", "index.json").
 */
export function fromFsError(error: unknown, path: string, what: string): RociError {
  if (error instanceof RociError) return error;
  const errno = errnoOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  switch (errno) {
    case "ENOENT":
      return new RociError("NOT_FOUND", `${what} ${path}: does not exist`, { cause: error, subject: path });
    case "ENOTDIR":
      return new RociError("INVALID_LAYOUT", `${what} ${path}: a parent is not a directory`, {
        cause: error,
        subject: path,
      });
    case "EISDIR":
      return new RociError("INVALID_LAYOUT", `${what} ${path}: is a directory, expected a file`, {
        cause: error,
        subject: path,
      });
    case "EACCES":
    case "EPERM":
      return new RociError("IO", `${what} ${path}: permission denied`, {
        cause: error,
        subject: path,
        hint: "roci only needs read permission on inputs; check the file modes and the user running roci",
      });
    default:
      return new RociError("IO", `${what} ${path}: ${detail}`, { cause: error, subject: path });
  }
}
