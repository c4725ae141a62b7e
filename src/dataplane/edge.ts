import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { backoffDelay } from "../core/backoff.js";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { silentLogger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { isLowercaseUuid } from "../core/uuid.js";
import type { EdgeEngine, EdgeRoute, EngineName } from "./engine.js";

const execFileAsync = promisify(execFile);

export interface ProxyEdgeOptions {
  /** Which proxy runs the edge (nginx-config.ts, haproxy-config.ts, caddy-config.ts). */
  engine: EdgeEngine;
  listenHost: string;
  listenPort: number;
  nodeApi: { host: string; port: number };
  appPort: number;
  /** The node's data dir; the edge keeps its files in `<dataDir>/edge` (0700). */
  dataDir: string;
  /** The roster's apps now; read on every batch. */
  routes: () => EdgeRoute[];
  logger?: Logger;
  /** How often the roster is compared with the live config. Default 200 ms (a change lands < 1 s). */
  pollMs?: number;
  /** The engine's binary. Default the engine's name on PATH. */
  binary?: string;
  /** Worker processes or threads. Default one per core, at most 2. */
  workers?: number;
}

/** What `/health` says about the edge. */
export interface EdgeStatus {
  engine: EngineName;
  running: boolean;
  /** Times the child died and was started again. */
  restarts: number;
  /** Config generation nginx answered with last; 0 before the first. */
  live_generation: number;
  /** Apps in the live config. */
  routes: number;
  /** Why the last generated config was refused, if it was. */
  last_refused: string | null;
}

/**
 * A proxy engine as the node's public listener: a supervised child, programmed from the roster.
 * Changes are batched (one poll interval), checked by the engine's validator (`nginx -t`,
 * `haproxy -c`, `caddy validate`) against a candidate file and only then moved over the live
 * config and applied gracefully (nginx SIGHUP, haproxy master-worker SIGUSR2, Caddy's admin API):
 * connections under way finish, new ones meet the new config. A refused config leaves the good
 * one in place. A child that dies is started again with the last good config.
 */
export class ProxyEdge {
  private readonly opts: ProxyEdgeOptions;
  private readonly engine: EdgeEngine;
  private readonly logger: Logger;
  private readonly dir: string;
  private readonly confPath: string;
  private readonly binary: string;
  private child: ChildProcess | undefined;
  private closing = false;
  private restarts = 0;
  private generation = 0;
  private liveGeneration = 0;
  private liveKey = "";
  /** The roster key of the newest config queued (live, installing, or refused). */
  private queuedKey = "";
  private liveRoutes = 0;
  private lastRefused: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  private applying: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private consecutiveDeaths = 0;

  constructor(opts: ProxyEdgeOptions) {
    this.opts = opts;
    this.engine = opts.engine;
    this.logger = opts.logger ?? silentLogger;
    this.dir = resolve(opts.dataDir, "edge");
    this.confPath = join(this.dir, opts.engine.configFile);
    this.binary = opts.binary ?? opts.engine.binary;
  }

  /** Writes and validates the first config, starts nginx and waits until it serves that config. */
  async start(): Promise<void> {
    await mkdir(join(this.dir, "tmp"), { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    await this.stopOrphan();
    const routes = checkedRoutes(this.opts.routes());
    const key = routesKey(routes);
    const text = this.render(routes, ++this.generation);
    await this.validate(text);
    await writeFile(this.confPath, text, { mode: 0o600 });
    this.liveKey = key;
    this.queuedKey = key;
    this.liveRoutes = routes.length;
    this.spawnChild();
    await this.waitForGeneration(this.generation, 10_000);
    this.timer = setInterval(() => this.schedule(), this.opts.pollMs ?? 200);
    this.timer.unref();
  }

  status(): EdgeStatus {
    return {
      engine: this.engine.name,
      running: this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null,
      restarts: this.restarts,
      live_generation: this.liveGeneration,
      routes: this.liveRoutes,
      last_refused: this.lastRefused,
    };
  }

  /** The child's pid (tests kill it to see it come back). */
  pid(): number | undefined {
    return this.child?.pid;
  }

  /** Resolves once the roster as it is now is live in nginx. */
  async settle(timeoutMs = 5000): Promise<void> {
    this.schedule();
    await this.applying;
    await this.waitForGeneration(this.generation, timeoutMs);
  }

  /**
   * Applies this config text instead of the roster's: tests use it to prove a config the engine
   * refuses never replaces the live one. Throws EDGE_CONFIG_REFUSED.
   */
  async applyText(text: string): Promise<void> {
    const run = this.applying.then(() => this.install(text, this.liveKey, this.liveRoutes));
    this.applying = run.catch(() => {});
    await run;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.applying;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    // The graceful stop: in-flight requests finish; cut after 2 s.
    child.kill(this.engine.stopSignal);
    const cut = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(cut);
  }

  private render(routes: readonly EdgeRoute[], generation: number): string {
    const root = process.getuid?.() === 0;
    return this.engine.render({
      listenHost: this.opts.listenHost,
      listenPort: this.opts.listenPort,
      nodeApi: this.opts.nodeApi,
      routes,
      appPort: this.opts.appPort,
      edgeDir: this.dir,
      workers: this.workers(),
      ...(root ? { workerUser: { user: "nobody", group: "nogroup" } } : {}),
      generation,
    });
  }

  private schedule(): void {
    if (this.closing) return;
    const routes = checkedRoutes(this.opts.routes());
    const key = routesKey(routes);
    // One config per roster change: a refused one is not retried until the roster moves again.
    if (key === this.queuedKey) return;
    this.queuedKey = key;
    const text = this.render(routes, ++this.generation);
    this.applying = this.applying
      .then(() => this.install(text, key, routes.length))
      .catch((err: unknown) => this.logger.error("edge config refused", { reason: String(err) }));
  }

  private async install(text: string, key: string, routeCount: number): Promise<void> {
    if (this.closing) return;
    await this.validate(text);
    const previous = await readFile(this.confPath, "utf8").catch(() => undefined);
    await this.replaceLive(text);
    const child = this.child;
    try {
      if (child && child.exitCode === null && child.signalCode === null)
        await this.engine.reload(child, this.dir);
    } catch (err) {
      // The engine kept its running config: the file goes back to it, so a restart serves it too.
      if (previous !== undefined) await this.replaceLive(previous);
      this.lastRefused = (err as Error).message.slice(0, 500);
      throw err;
    }
    this.liveKey = key;
    this.liveRoutes = routeCount;
  }

  private async replaceLive(text: string): Promise<void> {
    await writeFile(`${this.confPath}.next`, text, { mode: 0o600 });
    await rename(`${this.confPath}.next`, this.confPath);
  }

  private async validate(text: string): Promise<void> {
    const candidate = join(this.dir, `candidate.${this.engine.configFile}`);
    await writeFile(candidate, text, { mode: 0o600 });
    try {
      await execFileAsync(this.binary, this.engine.validateArgs(candidate, this.dir), {
        env: this.childEnv(),
        timeout: 30_000,
      });
      this.lastRefused = null;
    } catch (err) {
      // haproxy -c reports on stdout, nginx -t and caddy validate on stderr.
      const out = err as { stderr?: unknown; stdout?: unknown };
      const why =
        [out.stderr, out.stdout].map((o) => String(o ?? "").trim()).find((o) => o !== "") ??
        (err as Error).message;
      this.lastRefused = why.slice(0, 500);
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new TabbifyError(
          "EDGE_UNAVAILABLE",
          `the ${this.engine.name} data plane needs ${this.engine.binary} on PATH (apt-get install ${this.engine.aptPackage})`,
        );
      }
      throw new TabbifyError(
        "EDGE_CONFIG_REFUSED",
        `${this.engine.name} ${this.engine.validateArgs(candidate, this.dir)[0]} refused the generated config: ${this.lastRefused}`,
      );
    } finally {
      await rm(candidate, { force: true });
    }
  }

  private spawnChild(): void {
    const child = spawn(this.binary, this.engine.runArgs(this.confPath, this.dir), {
      stdio: ["ignore", "ignore", "pipe"],
      env: this.childEnv(),
      // Its own process group: workers of a master that was killed outright are reaped with it.
      detached: true,
    });
    this.child = child;
    // The engine runs in its own group and would outlive a node that exits without close().
    const reap = () => killGroup(child.pid);
    process.once("exit", reap);
    child.once("exit", () => process.off("exit", reap));
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (c: string) => {
      if (stderr.length < 2000) stderr += c;
    });
    const startedAt = Date.now();
    child.on("exit", (code, signal) => {
      killGroup(child.pid);
      if (this.closing) return;
      this.restarts++;
      this.consecutiveDeaths = Date.now() - startedAt > 30_000 ? 1 : this.consecutiveDeaths + 1;
      const delay = backoffDelay(this.consecutiveDeaths, 100, 5000);
      this.logger.error(`${this.engine.name} exited; restarting`, {
        code,
        signal,
        delay_ms: delay,
        stderr: stderr.trim(),
      });
      this.liveGeneration = 0;
      this.restartTimer = setTimeout(() => {
        if (!this.closing) this.spawnChild();
      }, delay);
    });
    child.on("error", (err) =>
      this.logger.error(`${this.engine.name} failed to start`, { reason: err.message }),
    );
  }

  private childEnv(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      ...this.engine.env(this.dir, this.workers()),
    };
  }

  private workers(): number {
    return this.opts.workers ?? Math.max(1, Math.min(2, availableParallelism()));
  }

  /** A node killed with -9 leaves its engine running on the port: stop it before starting ours. */
  private async stopOrphan(): Promise<void> {
    let pid: number;
    try {
      pid = Number((await readFile(join(this.dir, this.engine.pidFile), "utf8")).trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) return;
    try {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes(this.engine.binary) || !cmdline.includes(this.dir)) return;
      killGroup(pid);
    } catch {
      return;
    }
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(100);
    }
  }

  private async waitForGeneration(generation: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const url = `http://${hostForUrl(this.opts.listenHost)}:${this.opts.listenPort}/.tabbify-edge`;
    while (Date.now() < deadline) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        const seen = Number(await res.text());
        if (res.ok && seen >= generation) {
          this.liveGeneration = seen;
          return;
        }
      } catch {
        // Not listening yet.
      }
      await sleep(25);
    }
    throw new TabbifyError(
      "EDGE_UNAVAILABLE",
      `${this.engine.name} did not serve config generation ${generation} within ${timeoutMs} ms`,
    );
  }
}

/** SIGKILL to a process group; gone already is fine. */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // No such group: nothing left.
  }
}

/**
 * Only lowercase uuids and IP literals ever reach a generated config: the renderers splice them
 * into nginx, haproxy and Caddy syntax unescaped, so anything else is dropped here.
 */
export function checkedRoutes(routes: readonly EdgeRoute[]): EdgeRoute[] {
  return routes.filter((r) => isLowercaseUuid(r.uuid) && isIP(r.host) !== 0);
}

function routesKey(routes: readonly EdgeRoute[]): string {
  return routes
    .map((r) => `${r.uuid}=${r.host}`)
    .sort()
    .join(",");
}

function hostForUrl(host: string): string {
  const h = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return h.includes(":") ? `[${h}]` : h;
}

/**
 * The node's `data_plane` ready check: throws while the engine is down (between its death and the
 * restart), else says how many times it was restarted, so `/api/ready` shows both.
 */
export async function edgeReadiness(edge: ProxyEdge | undefined): Promise<string> {
  const status = edge?.status();
  if (!status?.running)
    throw new Error(
      `the ${status?.engine ?? "edge"} engine is not running (restarted ${status?.restarts ?? 0} times; the node is starting it again)`,
    );
  return `${status.engine} running, restarted ${status.restarts} times`;
}
