/**
 * bench:runtime part 4: `on_request` apps. Each app is started with idle_timeout_sec = 1, left
 * to go idle (its workload stopped, the runner holding the address), then sent one request: the
 * figure is that request's latency, wake included. Also the runner's RSS while the app sleeps,
 * which is what an idle app costs, and what the runtime booted ahead for the wake (a Node app's
 * next workload waiting at its gate, a wasm standby host): the runner's children while it sleeps.
 * Beside it, the floor for the process app: the same
 * `node server.js` spawned alone, to its first 200, in the same minute (a loaded machine slows
 * node's own boot most, and no runner can wake an app faster than it boots).
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { freeLoopbackPort } from "../src/core/net.js";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";
import { waitHealthy } from "../src/runtimes/health.js";

interface Supervisor {
  call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }>;
}

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 30_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

async function untilIdle(sup: Supervisor, uuid: string): Promise<Record<string, unknown>> {
  const end = Date.now() + 30_000;
  for (;;) {
    const { json } = await sup.call("GET", `/v1/apps/${uuid}`);
    if (json.state === "idle") return json;
    if (Date.now() > end) throw new Error(`app ${uuid} never went idle: ${JSON.stringify(json)}`);
    await sleep(100);
  }
}

/** ms from spawning `command` in `dir` (HOST/PORT set) to its first answer below 500. */
async function bootAlone(dir: string, command: string[]): Promise<number> {
  const port = await freeLoopbackPort();
  const t0 = performance.now();
  const child = spawn(command[0]!, command.slice(1), {
    cwd: dir,
    env: { PATH: process.env.PATH, HOST: "127.0.0.1", PORT: String(port) },
    stdio: "ignore",
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  try {
    await waitHealthy({ host: "127.0.0.1", port }, { timeoutMs: 30_000, exited });
    return performance.now() - t0;
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}

/** The processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((child) => readProcStatSync(child)?.ppid === pid);
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

export async function wakePart(
  sup: Supervisor,
  repoRoot: string,
  runs: number,
  rssMiB: (pid: number | null | undefined) => number | undefined,
): Promise<string[][]> {
  const lifecycle = { mode: "on_request", idle_timeout_sec: 1 };
  const cases = [
    {
      runtime: "process",
      spec: {
        runtime: "process",
        artifact_dir: join(repoRoot, "examples", "hello-node"),
        command: ["node", "server.js"],
        lifecycle,
      },
      aim: 200,
      alone: { dir: join(repoRoot, "examples", "hello-node"), command: ["node", "server.js"] },
    },
    {
      runtime: "wasm",
      spec: {
        runtime: "wasm",
        artifact_dir: join(repoRoot, "examples", "hello-wasm"),
        entry: "hello.wasm",
        lifecycle,
      },
      aim: 100,
      alone: undefined,
    },
  ];
  const rows: string[][] = [];
  for (const c of cases) {
    const uuid = randomUUID();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, c.spec);
    if (started.status !== 200) throw new Error(`start ${c.runtime}: ${JSON.stringify(started.json)}`);
    const url = `http://${deriveAppLoopback(uuid)}:${APP_PORT}/`;
    const wakes: number[] = [];
    const floors: number[] = [];
    const idleRss: number[] = [];
    const aheadRss: number[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        const idle = await untilIdle(sup, uuid);
        const rss = rssMiB(idle.pid as number | null);
        if (rss !== undefined) idleRss.push(rss);
        const booted = typeof idle.pid === "number" ? childrenOf(idle.pid) : [];
        const ahead = booted.map((child) => rssMiB(child) ?? 0).reduce((a, b) => a + b, 0);
        if (booted.length > 0) aheadRss.push(ahead);
        const t0 = performance.now();
        const status = await get(url);
        if (status !== 200) throw new Error(`${c.runtime}: the waking request got ${status}`);
        wakes.push(performance.now() - t0);
        if (c.alone) floors.push(await bootAlone(c.alone.dir, c.alone.command));
      }
    } finally {
      if (process.env.BENCH_WAKE_LOG) {
        const logs = await sup.call("GET", `/v1/apps/${uuid}/logs?tail=200`).catch(() => undefined);
        process.stdout.write(`${JSON.stringify(logs?.json).slice(0, 4000)}\n`);
      }
      await sup.call("POST", `/v1/apps/${uuid}/purge`).catch(() => {});
    }
    rows.push([
      c.runtime,
      `${median(wakes).toFixed(0)} (${Math.min(...wakes).toFixed(0)}–${Math.max(...wakes).toFixed(0)})`,
      `${c.aim}`,
      floors.length ? median(floors).toFixed(0) : "-",
      idleRss.length ? median(idleRss).toFixed(1) : "-",
      aheadRss.length ? median(aheadRss).toFixed(1) : "-",
    ]);
  }
  return rows;
}
