/**
 * `tabbify up`'s side of a platform upgrade. `up` holds every role's listening socket and keeps
 * its processes, so it is the one that replaces them; the decisions and the record belong to a
 * transient upgrader process `up` starts when the node asks (POST /api/v1/platform/upgrade).
 * The upgrader asks over its IPC channel: hand role R over to release V, revert, commit.
 *
 * If the upgrader exits before it commits (killed, crashed), `up` hands every role it moved in
 * that upgrade back to the release that ran before, so the platform never stays half-upgraded.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { relayLine } from "../core/log.js";
import { commitRelease, type PlatformRelease, releaseEntry } from "./releases.js";
import { RemoteSupervisor } from "./remote-supervisor.js";

/**
 * A role `up` hands over: one it keeps (src/main/up-roles.ts KeptRole), or a supervisor on
 * another host (remote-supervisor.ts), which replaces itself when asked.
 */
export interface HandoffRole {
  readonly name: string;
  /** What it runs now: a local role's `tabbify.js`, a remote supervisor's version. */
  readonly entry: string;
  handoff(entry: string, version: string, timeoutMs: number): Promise<HandoffTimes>;
}

/** From the new process's start: until it answered ready, and until the old one had exited. */
export interface HandoffTimes {
  readyMs: number;
  totalMs: number;
}

export interface UpgradeRequest {
  type: "platform-upgrade";
  id: string;
  tarball?: string;
  rollback?: boolean;
  restart_runners?: boolean;
}

export interface UpgradeControlOptions {
  dataDir: string;
  roles: Map<string, HandoffRole>;
  /** The release every role runs now. */
  running: PlatformRelease;
  /** `tabbify.js` of `up`'s own tree: the upgrader runs the code that started the platform. */
  upgraderEntry: string;
  /** Flags the upgrader needs besides the request (node data dir, node URL). */
  upgraderArgs: string[];
  /**
   * Secrets the upgrader needs, passed in its environment, never argv: the node key (to read the
   * roster), the supervisors' API key (to restart runners), the node's database URL.
   */
  upgraderEnv: NodeJS.ProcessEnv;
  /** The supervisors' API key, for handing over supervisors on other hosts. */
  supervisorKey: string;
  say: (line: string) => void;
  echo: boolean;
}

/** A role going back to the release it ran gets longer than a new one: there is nowhere else to go. */
const revertTimeoutMs = 180_000;

type UpgraderMessage =
  | {
      type: "swap";
      role: string;
      version: string;
      dir: string;
      timeoutMs: number;
      /** A supervisor on another host: where its API is, and the tarball it may need. */
      address?: string;
      tarball?: string;
    }
  | { type: "revert" }
  | { type: "commit"; version: string; dir: string };

export class UpgradeControl {
  #running: PlatformRelease;
  #upgrader: ChildProcess | undefined;
  /** Roles moved in the upgrade under way, with the entry and version each ran before. */
  #moved: { role: HandoffRole; entry: string; version: string }[] = [];
  #committed = false;
  /** The request being carried out; an upgrader's exit waits for it before reverting. */
  #inflight: Promise<void> = Promise.resolve();

  constructor(private readonly opts: UpgradeControlOptions) {
    this.#running = opts.running;
  }

  get running(): PlatformRelease {
    return this.#running;
  }

  /** A message from the node's process; only an upgrade request is acted on, one at a time. */
  fromNode(message: unknown): void {
    const m = message as Partial<UpgradeRequest>;
    if (m?.type !== "platform-upgrade" || typeof m.id !== "string" || !/^[0-9a-f-]{36}$/.test(m.id)) return;
    if (this.#upgrader) {
      this.opts.say(`upgrade ${m.id} ignored: upgrade already under way`);
      return;
    }
    const request = m.rollback
      ? ["--rollback"]
      : typeof m.tarball === "string"
        ? ["--tarball", m.tarball]
        : undefined;
    if (!request) return;
    this.#start(m.id, m.restart_runners === true ? [...request, "--restart-runners"] : request);
  }

  #start(id: string, request: string[]): void {
    this.#moved = [];
    this.#committed = false;
    const child = spawn(
      process.execPath,
      [
        this.opts.upgraderEntry,
        "upgrade",
        "run",
        "--id",
        id,
        "--data",
        this.opts.dataDir,
        "--from-version",
        this.#running.version,
        "--from-dir",
        this.#running.dir,
        ...this.opts.upgraderArgs,
        ...request,
      ],
      {
        env: { PATH: process.env.PATH ?? "", ...this.opts.upgraderEnv },
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      },
    );
    this.#upgrader = child;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on("line", (line) => {
        if (this.opts.echo) relayLine("upgrader", line);
      });
    }
    child.on("message", (message) => {
      this.#inflight = this.#inflight
        .then(() => this.#handle(child, message as UpgraderMessage))
        .catch((err: unknown) => {
          this.opts.say(`upgrade ${id}: ${(err as Error).message}`);
        });
    });
    child.once("exit", (code, signal) => {
      void this.#afterUpgrader(id, code, signal);
    });
    this.opts.say(`upgrade ${id}: upgrader started (pid ${child.pid})`);
  }

  async #handle(child: ChildProcess, message: UpgraderMessage): Promise<void> {
    const reply = (m: object) => {
      if (child.connected) child.send(m);
    };
    if (message.type === "swap") {
      const failed = (error: string) =>
        reply({ type: "swap-result", role: message.role, ok: false, ms: 0, error });
      let role: HandoffRole | undefined;
      try {
        role = message.address
          ? await RemoteSupervisor.reach(
              message.role,
              message.address,
              this.opts.supervisorKey,
              message.tarball,
            )
          : this.opts.roles.get(message.role);
      } catch (err) {
        return failed((err as Error).message);
      }
      if (!role) return failed("no such role");
      const before = {
        entry: role.entry,
        version: role instanceof RemoteSupervisor ? role.entry : this.#running.version,
      };
      try {
        const times = await role.handoff(releaseEntry(message), message.version, message.timeoutMs);
        this.#moved.push({ role, ...before });
        this.opts.say(
          `${role.name} now runs ${message.version} (new one ready in ${times.readyMs} ms, old one gone at ${times.totalMs} ms)`,
        );
        reply({ type: "swap-result", role: role.name, ok: true, ms: times.totalMs, ready_ms: times.readyMs });
      } catch (err) {
        failed((err as Error).message);
      }
    } else if (message.type === "revert") {
      const errors = await this.#revert();
      reply({ type: "reverted", errors });
    } else if (message.type === "commit") {
      const next = { version: message.version, dir: message.dir };
      await commitRelease(this.opts.dataDir, this.#running, next);
      this.#running = next;
      this.#committed = true;
      this.#moved = [];
      reply({ type: "committed" });
    }
  }

  /** Hands every role moved in this upgrade back, newest first; the errors, if any. */
  async #revert(): Promise<string[]> {
    const errors: string[] = [];
    for (const { role, entry, version } of this.#moved.reverse()) {
      try {
        const times = await role.handoff(entry, version, revertTimeoutMs);
        this.opts.say(`${role.name} back on ${version} (handoff in ${times.totalMs} ms)`);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    this.#moved = [];
    return errors;
  }

  async #afterUpgrader(id: string, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    await this.#inflight;
    if (!this.#committed && this.#moved.length > 0) {
      this.opts.say(
        `upgrade ${id}: the upgrader exited (${signal ?? `code ${code}`}) before committing; handing ${this.#moved.map((m) => m.role.name).join(", ")} back to ${this.#running.version}`,
      );
      const errors = await this.#revert();
      for (const e of errors) this.opts.say(`upgrade ${id}: revert failed: ${e}`);
    }
    this.opts.say(`upgrade ${id}: upgrader exited (${signal ?? `code ${code}`})`);
    this.#upgrader = undefined;
  }
}
