/**
 * Helpers for the runtime-plane end-to-end tests: a real `tabbify supervisor` process per test,
 * plain HTTP calls, and cleanup that kills every runner and workload a test started (by the pids
 * in the records and the ones seen through the API), even when the test fails.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { kernelHopTable } from "../src/main/kernel-hop-option.js";
import { freePort, repoRoot, sleep } from "./support/tools.js";

export { freePort, repoRoot, sleep } from "./support/tools.js";

export const tabbifyEntry = join(repoRoot, "dist", "src", "main", "tabbify.js");
export const versionApp = join(repoRoot, "test", "fixtures", "version-app");

/**
 * Supervisor flags that shrink every lifecycle timer so the end-to-end tests see reconcile,
 * respawn backoff and crash loops in seconds; `healthTimeoutMs` bounds a new workload's start.
 */
export function fastSupervisorArgs(healthTimeoutMs: number): string[] {
  return [
    "--reconcile-interval-ms",
    "200",
    "--restart-base-ms",
    "300",
    "--restart-cap-ms",
    "1200",
    "--runner-restart-base-ms",
    "300",
    "--runner-health-timeout-ms",
    String(healthTimeoutMs),
  ];
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
}

function killQuietly(target: number, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    process.kill(target, signal);
  } catch {
    // already gone
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readProcStatSync(pid);
  return stat !== undefined && stat.state !== "Z";
}

/** One supervisor process with its own data dir and port; `kill9` and `restart` keep the data dir. */
export class SupervisorUnderTest {
  readonly dataDir: string;
  port = 0;
  private child: ChildProcess | undefined;
  private output = "";
  /** Every pid seen through the API, killed at cleanup whether or not the test passed. */
  readonly seenPids = new Set<number>();
  /** Apps run as containers, removed at cleanup. */
  readonly dockerApps = new Set<string>();

  /**
   * The supervisor's API key: `SUPERVISOR_API_KEY` from `env`, else one written where it looks
   * for a key (`<data>/api.key`, 0600) before it starts, so a node can be given it first.
   */
  readonly apiKey: string;

  constructor(
    readonly extraArgs: string[] = [],
    readonly mesh: "local" | "ula" = "local",
    readonly env: NodeJS.ProcessEnv = {},
  ) {
    this.dataDir = mkdtempSync(join(tmpdir(), "tbf-sup-"));
    this.apiKey = env.SUPERVISOR_API_KEY ?? randomBytes(32).toString("base64url");
    writeFileSync(join(this.dataDir, "api.key"), `${this.apiKey}\n`, { mode: 0o600 });
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get log(): string {
    return this.output;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const child = spawn(
      process.execPath,
      [
        "--enable-source-maps",
        tabbifyEntry,
        "supervisor",
        "--name",
        "test-sup",
        "--data",
        this.dataDir,
        "--listen",
        `127.0.0.1:${this.port}`,
        "--mesh",
        this.mesh,
        ...this.extraArgs,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...this.env } },
    );
    this.child = child;
    child.stdout?.on("data", (d) => {
      this.output += d;
    });
    child.stderr?.on("data", (d) => {
      this.output += d;
    });
    // Generous: on a loaded 2-core machine a supervisor takes well over 15 s to listen.
    await until(
      "the supervisor's /health",
      async () => {
        if (child.exitCode !== null) throw new Error(`supervisor exited: ${this.output}`);
        const res = await fetch(`${this.base}/health`);
        return res.ok ? true : undefined;
      },
      90_000,
    );
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  async call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await res.json()) as Record<string, unknown>;
    for (const field of ["pid", "workload_pid"]) {
      if (typeof json[field] === "number") this.seenPids.add(json[field] as number);
    }
    return { status: res.status, json };
  }

  /** Kills the supervisor, then every runner (its process group) and workload it left. */
  async cleanup(): Promise<void> {
    await this.kill9();
    const runners = join(this.dataDir, "runners");
    let names: string[] = [];
    try {
      names = readdirSync(runners);
    } catch {
      names = [];
    }
    for (const name of names.filter((n) => n.endsWith(".json"))) {
      try {
        const record = JSON.parse(readFileSync(join(runners, name), "utf8")) as {
          pid: number | null;
          workload_pid: number | null;
        };
        if (record.pid) this.seenPids.add(record.pid);
        if (record.workload_pid) this.seenPids.add(record.workload_pid);
      } catch {
        // a record being rewritten; the pids seen through the API cover it
      }
    }
    for (const uuid of this.dockerApps) {
      const ids = spawnSync("docker", ["ps", "-aq", "--filter", `label=tabbify.app=${uuid}`], {
        encoding: "utf8",
      });
      const list = ids.stdout.split("\n").filter(Boolean);
      if (list.length > 0) spawnSync("docker", ["rm", "-f", ...list]);
    }
    for (const spare of sparesOf(this.dataDir)) this.seenPids.add(spare.pid);
    for (const pid of this.seenPids) {
      if (pid === process.pid) continue;
      killQuietly(-pid);
      killQuietly(pid);
    }
    // The kernel hop's table (one per data dir, made where the supervisor could) goes with it.
    spawnSync("nft", ["delete", "table", "inet", kernelHopTable(this.dataDir)], { stdio: "ignore" });
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

function livePids(): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter(alive);
}

/**
 * A builder supervisor (docker builds, repos on loopback allowed) started against `node`, once it
 * has joined that node's roster: the shape every pipeline end-to-end test needs.
 */
export async function startBuilderOnRoster(
  node: { url: string; coordinator: { supervisors(): { name: string }[] } },
  name: string,
  keys: { nodeKey: string; supervisorKey: string },
): Promise<SupervisorUnderTest> {
  const supervisor = new SupervisorUnderTest(
    ["--builder", "--allow-private-repos", "--node", node.url, "--name", name],
    "local",
    { TABBIFY_NODE_KEY: keys.nodeKey, SUPERVISOR_API_KEY: keys.supervisorKey },
  );
  await supervisor.start();
  const deadline = Date.now() + 15_000;
  while (!node.coordinator.supervisors().some((s) => s.name === name)) {
    if (Date.now() > deadline) throw new Error(`supervisor never joined the roster\n${supervisor.log}`);
    await sleep(100);
  }
  return supervisor;
}

/** Removes the local images a deploy pulled for `repository` (`<registry host>/<tenant>/<uuid>`). */
export function removeImagesOf(repository: string): void {
  const list = spawnSync("docker", ["images", "-q", repository], { encoding: "utf8" });
  const ids = [...new Set(list.stdout.split("\n").filter(Boolean))];
  if (ids.length > 0) spawnSync("docker", ["rmi", "-f", ...ids]);
}

/** The unassigned warm spare runners of the supervisor using `dataDir`, with their sockets. */
export function sparesOf(dataDir: string): { pid: number; sock: string }[] {
  return livePids().flatMap((pid) => {
    const args = cmdlineOf(pid);
    const sock = args[args.indexOf("--control-sock") + 1];
    return args.includes("--spare") && args[args.indexOf("--data-dir") + 1] === dataDir && sock
      ? [{ pid, sock }]
      : [];
  });
}

/** Living processes whose parent is `pid`, with their command lines. */
export function childrenOf(pid: number): { pid: number; args: string[] }[] {
  return livePids().flatMap((child) => {
    return readProcStatSync(child)?.ppid === pid ? [{ pid: child, args: cmdlineOf(child) }] : [];
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** GET through a keep-alive agent (as a real client would), body as text. */
export function httpGet(
  addr: string,
  path = "/",
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  const url = new URL(`http://${addr}${path}`);
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port,
        path: url.pathname + url.search,
        agent,
        timeout: timeoutMs,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

export function processSpec(env: Record<string, string> = {}): Record<string, unknown> {
  return { runtime: "process", artifact_dir: versionApp, command: ["node", "server.mjs"], env };
}

export function randomUuid(): string {
  return crypto.randomUUID();
}
