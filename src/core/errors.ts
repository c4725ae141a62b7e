/**
 * Errors users can hit carry a stable code; each HTTP edge maps codes to a status in one table
 * of its own. A plain Error anywhere means a bug and surfaces as a 500.
 *
 * Messages must never contain secret values (tokens, keys, passwords): name the thing, not its
 * value.
 */
export class TabbifyError extends Error {
  override readonly name = "TabbifyError";
  constructor(
    /** Stable, upper-snake code, e.g. `BLOB_UNKNOWN` or `TOKEN_EXPIRED`. */
    readonly code: string,
    message: string,
    /** Machine-readable context safe to show the caller (never secrets). */
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

export function isTabbifyError(err: unknown, code?: string): err is TabbifyError {
  return err instanceof TabbifyError && (code === undefined || err.code === code);
}

/** Node's `ENOENT` and friends, narrowed. */
export function isErrno(err: unknown, code: string): err is NodeJS.ErrnoException {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}
