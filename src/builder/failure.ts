import { TabbifyError } from "../core/errors.js";

/** How a build fails: its stages, the detail every failure carries, and the output tail it quotes. */

export type BuildStage = "queued" | "clone" | "build" | "push" | "done" | "failed";
/** The stages a build can fail in; `validate` means it was refused before anything ran. */
export type FailedStage = "validate" | "clone" | "build" | "push";

/** What a failed build carries in `TabbifyError.detail` (safe to show: redacted, no secrets). */
export interface BuildFailureDetail {
  stage: FailedStage;
  user_fault: boolean;
  log_tail: string[];
}

export function fail(code: string, message: string, detail: BuildFailureDetail): TabbifyError {
  return new TabbifyError(code, message, detail);
}

/** Keeps the last `size` lines. */
export class LineTail {
  readonly #lines: string[] = [];
  constructor(private readonly size: number) {}
  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.size) this.#lines.splice(0, this.#lines.length - this.size);
  }
  lines(): string[] {
    return [...this.#lines];
  }
}
