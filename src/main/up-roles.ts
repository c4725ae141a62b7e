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
import { relayLine } from "../core/log.js";
import { streamingProcessFlags } from "../core/node-flags.js";
import { sleep } from "../core/sleep.js";
import { type BackoffPolicy, retryDelayMs } from "../supervisor/backoff.js";
import { childExit, waitVersionReady } from "../upgrade/handoff-probe.js";
import { offerListener, type SharedListener } from "../upgrade/listener-handoff.js";
import type { HandoffTimes } from "../upgrade/up-control.js";

/** This tree's entry; a role runs another release's entry after an upgrade. */
export const tabbifyEntry = fileURLToPath(new URL("./tabbify.js", import.meta.url));

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
  /** The socket `up` holds for the role's port, handed to every process of the role. */
  listener?: SharedListener;
  /** The `tabbify.js` to run; this tree's unless `up` runs a release. */
  entry?: string;
}

export class KeptRole {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly #exits = new Map<ChildProcess, Promise<void>>();
  #startedAt = 0;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  /** Restarts begin once the role first served: one that cannot start at all fails `up` instead. */
  #served = false;
  #entry: string;
  #onMessage: ((message: unknown) => void) | undefined;

  constructor(
    readonly spec: RoleSpec,
    private readonly opts: { echo: boolean; say: (line: string) => void },
  ) {
    this.#entry = spec.entry ?? tabbifyEntry;
  }

  /** The entry the role runs now (changes with each handoff). */
  get entry(): string {
    return this.#entry;
  }

  /** Messages the role's current process sends over its IPC channel. */
  onMessage(handler: (message: unknown) => void): void {
    this.#onMessage = handler;
  }

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the role and waits until it answers; throws when it exits or time runs out first. */
  async start(timeoutMs = 90_000): Promise<void> {
    const child = this.#spawn();
    this.#adopt(child);
    await waitAnswering(this.spec, child, timeoutMs);
    this.#served = true;
  }

  #spawn(entry = this.#entry): ChildProcess {
    const listener = this.spec.listener;
    const child = spawn(
      process.execPath,
      ["--enable-source-maps", ...streamingProcessFlags, entry, ...this.spec.args],
      {
        env: listener ? { ...this.spec.env, TABBIFY_LISTENER_HANDOFF: "1" } : this.spec.env,
        stdio: ["ignore", "pipe", "pipe", ...(listener ? (["ipc"] as const) : [])],
      },
    );
    if (listener) offerListener(child, listener);
    child.on("message", (message) => {
      if (child === this.#child) this.#onMessage?.(message);
    });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on("line", (line) => {
        if (this.opts.echo) relayLine(this.name, line);
      });
    }
    const exited = new Promise<void>((done) => {
      child.once("exit", (code, signal) => {
        done();
        // Only the current process is kept alive: a retired one or a failed candidate is not.
        if (child === this.#child) this.#onExit(code, signal);
      });
    });
    this.#exits.set(child, exited);
    return child;
  }

  #adopt(child: ChildProcess): void {
    this.#child = child;
    this.#startedAt = Date.now();
    this.#exited = this.#exits.get(child) ?? Promise.resolve();
  }

  /**
   * Replaces the running process with one of `entry` without a refused connection: the new one
   * listens on the same socket, the old one is stopped only once the new one answers
   * `/api/version` with `version` and `/api/ready` with 200 (over one connection, see
   * handoff-probe.ts). When that does not happen within `timeoutMs` the new one is stopped and
   * the old one keeps serving; throws ROLE_NOT_READY with the reason.
   */
  async handoff(entry: string, version: string, timeoutMs: number): Promise<HandoffTimes> {
    const listener = this.spec.listener;
    const old = this.#child;
    if (!listener || !old || this.#stopping) {
      throw new TabbifyError("ROLE_NOT_READY", `${this.name} is not running under a shared listener`);
    }
    const begun = Date.now();
    const candidate = this.#spawn(entry);
    let why: string;
    try {
      await waitVersionReady(listener.host, listener.port, version, timeoutMs, childExit(candidate));
      const readyMs = Date.now() - begun;
      this.#adopt(candidate);
      this.#entry = entry;
      this.#failures = 0;
      await stopProcess(old, this.#exits.get(old), 10_000);
      this.#exits.delete(old);
      return { readyMs, totalMs: Date.now() - begun };
    } catch (err) {
      why = (err as Error).message;
    }
    await stopProcess(candidate, this.#exits.get(candidate), 5_000);
    this.#exits.delete(candidate);
    throw new TabbifyError("ROLE_NOT_READY", `${this.name} ${version}: ${why}`);
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
      this.#adopt(child);
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
    if (child) await stopProcess(child, this.#exited, graceMs);
  }
}

/** SIGTERM, SIGKILL after `graceMs`; resolves once the process has exited. */
async function stopProcess(
  child: ChildProcess,
  exited: Promise<void> | undefined,
  graceMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(kill);
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
      await sleep(150);
    }
  }
  throw new TabbifyError(
    "ROLE_FAILED",
    `${spec.name} did not answer on ${spec.readyUrl} within ${timeoutMs / 1000} s`,
  );
}
