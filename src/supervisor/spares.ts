import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { backoffDelay } from "../core/backoff.js";
import { isErrno } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { type AssignRequest, controlRequest } from "../runner/control.js";
import { rotateByRename } from "../runner/log-rotation.js";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { killGroup, processAlive, spawnSpareRunner, stopGroup, tailLog } from "./spawn.js";

/**
 * Warm spare runners. Booting node and the runner's modules is most of a runner's cold start, and
 * none of it depends on the app, so the supervisor keeps `size` runners booted ahead
 * (`tabbify runner --spare`), each waiting on its own control socket
 * (`<runners>/spare-<id>.sock`). A start takes one and assigns it the app; the spare then serves
 * exactly like a runner spawned for that app (same control socket, log, record), and a new spare
 * boots once the start is done. A spare whose supervisor dies exits by itself.
 */

export interface SpareOptions {
  size: number;
  runnersDir: string;
  entry: string;
  dataDir: string;
  parent: string;
  nodeUrl?: string;
  nodeKey?: string;
  extraArgs?: string[];
  logger: Logger;
  /** How long a spare may take to answer on its socket after it was spawned. */
  bootTimeoutMs?: number;
}

export interface Spare {
  pid: number;
  child: ChildProcess;
  controlSock: string;
  logPath: string;
}

const sparePrefix = "spare-";

export class SparePool {
  private readonly ready: Spare[] = [];
  private booting = 0;
  private failures = 0;
  private closed = false;
  private fillTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: SpareOptions) {}

  /**
   * Removes what spares of an earlier supervisor process left in the runners directory: a spare
   * still answering (its supervisor died under a second ago) is told to stop; files are removed.
   */
  async sweep(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.opts.runnersDir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return;
      throw err;
    }
    for (const name of names.filter((n) => n.startsWith(sparePrefix))) {
      const path = join(this.opts.runnersDir, name);
      if (name.endsWith(".sock"))
        await controlRequest(path, { cmd: "stop" }, { timeoutMs: 1_000 }).catch(() => {});
      await unlink(path).catch(() => {});
    }
  }

  /** Spares ready to take a start, and spares still booting. */
  counts(): { ready: number; booting: number } {
    return { ready: this.ready.length, booting: this.booting };
  }

  /** Boots spares until `size` are ready or booting. Never throws: a failed boot is retried later. */
  fill(): void {
    if (this.closed || this.fillTimer) return;
    while (this.ready.length + this.booting < this.opts.size) {
      this.booting++;
      this.boot()
        .then(
          (spare) => {
            this.failures = 0;
            if (this.closed) void this.stopSpare(spare);
            else this.ready.push(spare);
          },
          (err: unknown) => {
            this.failures++;
            this.opts.logger.warn("a spare runner did not boot; starts run cold until one does", {
              error: (err as Error).message,
            });
          },
        )
        .finally(() => {
          this.booting--;
          if (this.failures > 0) this.retryLater();
        });
    }
  }

  private retryLater(): void {
    if (this.closed || this.fillTimer) return;
    const delay = backoffDelay(this.failures, 1_000, 60_000);
    this.fillTimer = setTimeout(() => {
      this.fillTimer = undefined;
      this.fill();
    }, delay);
    this.fillTimer.unref();
  }

  /** Spawns one spare and waits until its socket answers; kills it if it never does. */
  private async boot(): Promise<Spare> {
    const id = randomBytes(6).toString("hex");
    const controlSock = join(this.opts.runnersDir, `${sparePrefix}${id}.sock`);
    const logPath = join(this.opts.runnersDir, `${sparePrefix}${id}.log`);
    const child = await spawnSpareRunner({
      entry: this.opts.entry,
      controlSock,
      dataDir: this.opts.dataDir,
      logPath,
      parent: this.opts.parent,
      ...(this.opts.nodeUrl ? { nodeUrl: this.opts.nodeUrl } : {}),
      ...(this.opts.extraArgs ? { extraArgs: this.opts.extraArgs } : {}),
    });
    const spare: Spare = { pid: child.pid!, child, controlSock, logPath };
    const deadline = Date.now() + (this.opts.bootTimeoutMs ?? 30_000);
    while (Date.now() < deadline && exited(child) === undefined) {
      const answered = await controlRequest(controlSock, { cmd: "ping" }, { timeoutMs: 1_000 }).then(
        (reply) => reply.reply === "pong",
        () => false,
      );
      if (answered) return spare;
      await sleep(20);
    }
    const tail = await tailLog(logPath, 1024);
    await this.discard(spare);
    throw new Error(`spare ${spare.pid} ${exited(child) ?? "did not answer on its socket"}: ${tail.trim()}`);
  }

  /**
   * Hands a ready spare the app: the spare's log becomes `logPath`, then the spare binds the app's
   * control socket and starts the workload. The node key and the workload's user go with the
   * assignment, over the spare's socket (0600, in the supervisor's 0700 runners directory).
   * Undefined when no spare is ready or the one taken fails its assignment (it is then killed):
   * the caller spawns a runner the cold way.
   */
  async assign(app: {
    uuid: string;
    bindAddr: string;
    controlSock: string;
    logPath: string;
    spec: WorkloadSpec;
    user?: WorkloadUser;
  }): Promise<Spare | undefined> {
    let spare = this.ready.shift();
    while (spare && (exited(spare.child) !== undefined || !(await processAlive(spare.pid)))) {
      await this.discard(spare);
      spare = this.ready.shift();
    }
    if (!spare) return undefined;
    const request: AssignRequest = {
      cmd: "assign",
      uuid: app.uuid,
      bind: app.bindAddr,
      control_sock: app.controlSock,
      log: app.logPath,
      spec: app.spec,
      ...(this.opts.nodeKey ? { node_key: this.opts.nodeKey } : {}),
      ...(app.user ? { user: app.user } : {}),
    };
    try {
      // An earlier log of the app moves aside to `.1` so the spare's log can take its name.
      await rotateByRename(app.logPath, 0);
      await rename(spare.logPath, app.logPath);
      const reply = await controlRequest(spare.controlSock, request, { timeoutMs: 10_000 });
      if (reply.reply !== "ok")
        throw new Error(reply.reply === "err" ? reply.message : `unexpected reply ${reply.reply}`);
    } catch (err) {
      this.opts.logger.warn("a spare runner refused its app; spawning one the cold way", {
        uuid: app.uuid,
        error: (err as Error).message,
      });
      await this.discard(spare);
      return undefined;
    }
    return { ...spare, logPath: app.logPath };
  }

  /** Stops every spare (they hold no app). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.fillTimer) clearTimeout(this.fillTimer);
    const spares = this.ready.splice(0);
    await Promise.all(spares.map((s) => this.stopSpare(s)));
  }

  private async stopSpare(spare: Spare): Promise<void> {
    await controlRequest(spare.controlSock, { cmd: "stop" }, { timeoutMs: 2_000 }).catch(() => {});
    const deadline = Date.now() + 2_000;
    while (Date.now() < deadline && (await processAlive(spare.pid))) await sleep(25);
    await this.discard(spare);
  }

  private async discard(spare: Spare): Promise<void> {
    if (await processAlive(spare.pid)) await stopGroup(spare.pid, 1_000);
    else killGroup(spare.pid);
    await unlink(spare.controlSock).catch(() => {});
    await unlink(spare.logPath).catch(() => {});
  }
}

function exited(child: ChildProcess): string | undefined {
  if (child.exitCode !== null) return `exited with code ${child.exitCode}`;
  if (child.signalCode !== null) return `was killed by ${child.signalCode}`;
  return undefined;
}
