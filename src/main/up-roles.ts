/**
 * The roles `tabbify up` runs, each a child process kept alive: a role that dies while `up` runs
 * is started again with backoff (and says so on stderr), while the others keep serving. A node
 * that goes away costs the proxy only while it restarts; a supervisor that goes away costs nothing
 * on `/app/<uuid>`, since its runners are detached and the node proxies to them directly.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { TabbifyError } from "../core/errors.js";
import { streamingProcessFlags } from "../core/node-flags.js";
import { type BackoffPolicy, retryDelayMs } from "../supervisor/backoff.js";

const tabbifyEntry = fileURLToPath(new URL("./tabbify.js", import.meta.url));

/** Roles restart fast (a port is free again at once), then slower while they keep dying. */
export const roleBackoff: Pick<BackoffPolicy, "baseMs" | "capMs" | "stableWindowMs"> = {
  baseMs: 500,
  capMs: 30_000,
  stableWindowMs: 30_000,
};

export interface RoleSpec {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Answers (any HTTP status) once the role serves. */
  readyUrl: string;
}

export class KeptRole {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #startedAt = 0;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  /** Restarts begin once the role first served: one that cannot start at all fails `up` instead. */
  #served = false;

  constructor(
    readonly spec: RoleSpec,
    private readonly opts: { echo: boolean; say: (line: string) => void },
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the role and waits until it answers; throws when it exits or time runs out first. */
  async start(timeoutMs = 30_000): Promise<void> {
    const child = this.#spawn();
    await waitAnswering(this.spec, child, timeoutMs);
    this.#served = true;
  }

  #spawn(): ChildProcess {
    const child = spawn(
      process.execPath,
      ["--enable-source-maps", ...streamingProcessFlags, tabbifyEntry, ...this.spec.args],
      { env: this.spec.env, stdio: ["ignore", "pipe", "pipe"] },
    );
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on("line", (line) => {
        if (this.opts.echo) process.stderr.write(`[${this.name}] ${line}\n`);
      });
    }
    this.#child = child;
    this.#startedAt = Date.now();
    this.#exited = new Promise((done) => {
      child.once("exit", (code, signal) => {
        done();
        this.#onExit(code, signal);
      });
    });
    return child;
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#stopping || !this.#served) return;
    if (Date.now() - this.#startedAt >= roleBackoff.stableWindowMs) this.#failures = 0;
    this.#failures += 1;
    const delayMs = retryDelayMs(this.#failures, { ...roleBackoff, crashloopAt: 0, parkAt: 0 });
    this.opts.say(
      `${this.name} exited (${signal ?? `code ${code}`}); restarting in ${(delayMs / 1000).toFixed(1)} s (restart ${this.#failures} in a row); the other roles keep serving`,
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#stopping) return;
      const child = this.#spawn();
      waitAnswering(this.spec, child, 60_000).then(
        () => this.opts.say(`${this.name} is back (pid ${child.pid})`),
        // An exit is reported (and retried) by the exit handler; a role that never answers is killed so it is.
        (err: unknown) => {
          if (child.exitCode === null && child.signalCode === null) {
            this.opts.say(`${this.name}: ${(err as Error).message}; killing it`);
            child.kill("SIGKILL");
          }
        },
      );
    }, delayMs);
  }

  /** Stops the role for good: no restart follows. SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.#exited;
    clearTimeout(kill);
  }
}

/** Resolves when the role answers any HTTP status; rejects when it exits or time runs out. */
async function waitAnswering(spec: RoleSpec, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new TabbifyError(
        "ROLE_FAILED",
        `${spec.name} exited with ${child.signalCode ?? `code ${child.exitCode}`} while starting`,
      );
    }
    try {
      await fetch(spec.readyUrl, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  throw new TabbifyError(
    "ROLE_FAILED",
    `${spec.name} did not answer on ${spec.readyUrl} within ${timeoutMs / 1000} s`,
  );
}
