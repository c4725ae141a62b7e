import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { silentLogger } from "../core/log.js";
import { type EdgeRoute, renderNginxConfig } from "./nginx-config.js";

const execFileAsync = promisify(execFile);

export interface NginxEdgeOptions {
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
  /** The nginx binary. Default `nginx` on PATH. */
  binary?: string;
  /** nginx worker processes. Default one per core, at most 2. */
  workers?: number;
}

/** What `/health` says about the edge. */
export interface EdgeStatus {
  engine: "nginx";
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
 * nginx as the node's public listener: a supervised child, programmed from the roster. Changes
 * are batched (one poll interval), validated with `nginx -t` against a candidate file and only
 * then moved over the live config and signalled with SIGHUP, nginx's graceful reload: old workers
 * finish their connections, new ones take new connections. A refused config leaves the good one
 * in place. A child that dies is started again with the last good config.
 */
export class NginxEdge {
  private readonly opts: NginxEdgeOptions;
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

  constructor(opts: NginxEdgeOptions) {
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
    this.dir = resolve(opts.dataDir, "edge");
    this.confPath = join(this.dir, "nginx.conf");
    this.binary = opts.binary ?? "nginx";
  }

  /** Writes and validates the first config, starts nginx and waits until it serves that config. */
  async start(): Promise<void> {
    await mkdir(join(this.dir, "tmp"), { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    await this.stopOrphan();
    const routes = this.opts.routes();
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
      engine: "nginx",
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
   * Applies a config rendered by `render` instead of the roster's: tests use it to prove a config
   * nginx refuses never replaces the live one. Throws EDGE_CONFIG_REFUSED.
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
    // SIGQUIT: graceful shutdown, in-flight requests finish; cut after 2 s.
    child.kill("SIGQUIT");
    const cut = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(cut);
  }

  private render(routes: readonly EdgeRoute[], generation: number): string {
    const root = process.getuid?.() === 0;
    return renderNginxConfig({
      listenHost: this.opts.listenHost,
      listenPort: this.opts.listenPort,
      nodeApi: this.opts.nodeApi,
      routes,
      appPort: this.opts.appPort,
      edgeDir: this.dir,
      workers: this.opts.workers ?? Math.max(1, Math.min(2, availableParallelism())),
      ...(root ? { workerUser: "nobody nogroup" } : {}),
      generation,
    });
  }

  private schedule(): void {
    if (this.closing) return;
    const routes = this.opts.routes();
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
    await writeFile(`${this.confPath}.next`, text, { mode: 0o600 });
    await rename(`${this.confPath}.next`, this.confPath);
    this.liveKey = key;
    this.liveRoutes = routeCount;
    this.child?.kill("SIGHUP");
  }

  private async validate(text: string): Promise<void> {
    const candidate = join(this.dir, "nginx.conf.candidate");
    await writeFile(candidate, text, { mode: 0o600 });
    try {
      await execFileAsync(this.binary, [
        "-t",
        "-q",
        "-p",
        `${this.dir}/`,
        "-e",
        join(this.dir, "test.log"),
        "-c",
        candidate,
      ]);
      this.lastRefused = null;
    } catch (err) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim();
      this.lastRefused = stderr.slice(0, 500);
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new TabbifyError(
          "EDGE_UNAVAILABLE",
          `the nginx data plane needs nginx on PATH (apt-get install nginx)`,
        );
      }
      throw new TabbifyError(
        "EDGE_CONFIG_REFUSED",
        `nginx -t refused the generated config: ${this.lastRefused}`,
      );
    } finally {
      await rm(candidate, { force: true });
    }
  }

  private spawnChild(): void {
    const child = spawn(
      this.binary,
      [
        "-p",
        `${this.dir}/`,
        "-e",
        join(this.dir, "error.log"),
        "-c",
        this.confPath,
        "-g",
        "daemon off; master_process on;",
      ],
      {
        stdio: ["ignore", "ignore", "pipe"],
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
        // Its own process group: workers of a master that was killed outright are reaped with it.
        detached: true,
      },
    );
    this.child = child;
    // nginx runs in its own group and would outlive a node that exits without close().
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
      const delay = Math.min(100 * 2 ** (this.consecutiveDeaths - 1), 5000);
      this.logger.error("nginx exited; restarting", { code, signal, delay_ms: delay, stderr: stderr.trim() });
      this.liveGeneration = 0;
      this.restartTimer = setTimeout(() => {
        if (!this.closing) this.spawnChild();
      }, delay);
    });
    child.on("error", (err) => this.logger.error("nginx failed to start", { reason: err.message }));
  }

  /** A node killed with -9 leaves its nginx running on the port: stop it before starting ours. */
  private async stopOrphan(): Promise<void> {
    let pid: number;
    try {
      pid = Number((await readFile(join(this.dir, "nginx.pid"), "utf8")).trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) return;
    try {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes("nginx") || !cmdline.includes(this.dir)) return;
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
      await new Promise((r) => setTimeout(r, 100));
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
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new TabbifyError(
      "EDGE_UNAVAILABLE",
      `nginx did not serve config generation ${generation} within ${timeoutMs} ms`,
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
