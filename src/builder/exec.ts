import { spawn } from "node:child_process";
import { redactUrl } from "../pipeline/github.js";

/** Longest output line kept whole; longer ones are cut (logs) or passed on in pieces (exec). */
export const MAX_LINE = 4096;

export interface RunOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal | undefined;
  /** Called with each redacted output line (stdout and stderr alike). */
  onLine?: (line: string) => void;
}

export interface RunOutcome {
  code: number | null;
  /** Redacted output, for parsing (digest lines) — never whole images, only command chatter. */
  lines: string[];
}

/** Runs a command, streaming its output line by line (redacted), killing it on abort. */
export function exec(command: string, args: string[], opts: RunOptions): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      resolve({ code: null, lines: ["cancelled"] });
      return;
    }
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    const onLine = (raw: string) => {
      const line = redactUrl(raw);
      if (line.trim() === "") return;
      if (lines.length < 10_000) lines.push(line);
      opts.onLine?.(line);
    };
    const splitter = () => {
      let rest = "";
      return {
        data: (chunk: Buffer) => {
          rest += chunk.toString("utf8");
          const parts = rest.split(/\r?\n|\r/);
          rest = parts.pop() ?? "";
          for (const part of parts) onLine(part);
          // A line with no end in sight is passed on in pieces rather than held in memory.
          if (rest.length > MAX_LINE) {
            onLine(rest);
            rest = "";
          }
        },
        end: () => {
          if (rest !== "") onLine(rest);
          rest = "";
        },
      };
    };
    const out = splitter();
    const err = splitter();
    child.stdout?.on("data", out.data);
    child.stderr?.on("data", err.data);
    const onAbort = () => child.kill("SIGTERM");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      opts.signal?.removeEventListener("abort", onAbort);
      reject(new Error(`${command} could not be started: ${e.message}`));
    });
    child.on("close", (code) => {
      opts.signal?.removeEventListener("abort", onAbort);
      out.end();
      err.end();
      resolve({ code, lines });
    });
  });
}
