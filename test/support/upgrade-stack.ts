/**
 * For platform upgrade tests: release tarballs of this built tree (`tabbify upgrade pack`'s code,
 * with a bumped version and optionally a role broken on purpose), request loops that measure
 * every answer, and the processes of a `tabbify up` found by their command lines.
 */

import { readdirSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { sleep } from "../../src/core/sleep.js";
import { packStaged, stageRelease } from "../../src/upgrade/pack.js";
import { repoRoot } from "./tools.js";

/** A release tarball of this tree at `version`; `patch` may alter the staged tree first. */
export async function releaseTarball(
  outDir: string,
  version: string,
  patch?: (stage: string) => Promise<void>,
): Promise<string> {
  const stage = await stageRelease(repoRoot, { version });
  await patch?.(stage);
  return packStaged(stage, outDir);
}

/** Makes the staged release's `tabbify <role>` exit 3 as soon as it runs. */
export function breakRole(role: string): (stage: string) => Promise<void> {
  return async (stage) => {
    const file = join(stage, "dist", "src", "main", `${role}.js`);
    const text = await readFile(file, "utf8");
    const marker = "export async function run(argv, env) {";
    if (!text.includes(marker)) throw new Error(`${file} has no run(argv, env) to break`);
    await writeFile(file, text.replace(marker, `${marker}\n    process.exit(3);`));
  };
}

/** The status, and for an answer other than 200 the start of its body (who answered, and why). */
function getOnce(url: URL): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    // A connection per request: each one is accepted by whichever process serves the port then.
    const req = http.get(
      { host: url.hostname, port: url.port, path: url.pathname, agent: false, timeout: 10_000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (res.statusCode !== 200 && body.length < 300) body += chunk;
        });
        res.on("end", () => done({ status: res.statusCode ?? 0, body: body.slice(0, 300) }));
        res.on("error", fail);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", fail);
  });
}

/** GETs `url` back to back, each answer timed and filed under the current phase. */
export class RequestLoop {
  readonly failures: string[] = [];
  readonly latencies = new Map<string, number[]>();
  #phase = "rest";
  #stopped = false;
  #done: Promise<void> | undefined;

  constructor(readonly url: string) {}

  set phase(name: string) {
    this.#phase = name;
  }

  start(): void {
    this.#done = (async () => {
      while (!this.#stopped) {
        const phase = this.#phase;
        const t0 = performance.now();
        try {
          const answer = await getOnce(new URL(this.url));
          if (answer.status !== 200)
            this.failures.push(
              `${phase}: HTTP ${answer.status} at ${new Date().toISOString()} ${answer.body}`,
            );
        } catch (err) {
          this.failures.push(`${phase}: ${(err as Error).message} at ${new Date().toISOString()}`);
        }
        const list = this.latencies.get(phase) ?? [];
        list.push(performance.now() - t0);
        this.latencies.set(phase, list);
        await sleep(20);
      }
    })();
  }

  #reported = 0;

  /** The failures not returned before: each test judges its own, not an earlier test's. */
  newFailures(): string[] {
    const fresh = this.failures.slice(this.#reported);
    this.#reported = this.failures.length;
    return fresh;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }

  /** [count, p50, p99] in ms for a phase. */
  stats(phase: string): { n: number; p50: number; p99: number } {
    const sorted = [...(this.latencies.get(phase) ?? [])].sort((a, b) => a - b);
    const at = (q: number) =>
      sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
    return { n: sorted.length, p50: at(0.5), p99: at(0.99) };
  }
}

/** Pids of living `tabbify <role>` processes whose arguments include `needle` (e.g. a data dir). */
export function rolePids(role: string, needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    const at = args.findIndex((a) => a.endsWith("tabbify.js"));
    if (at !== -1 && args[at + 1] === role && args.some((a) => a.includes(needle))) pids.push(Number(entry));
  }
  return pids;
}

/**
 * A second `tabbify supervisor` on the node's roster, as on another host: its own data dir and
 * port, not kept by `up`, with `up`'s node key and supervisor key (the fleet's). Its output goes
 * to `<dir>/supervisor.log`. It replaces itself on upgrades, so it is stopped by its data dir.
 */
export async function startOtherSupervisor(opts: {
  dir: string;
  name: string;
  nodeUrl: string;
  nodeKey: string;
  supervisorKey: string;
}): Promise<{ url: string; dataDir: string; stop(): Promise<void> }> {
  const { mkdir, open } = await import("node:fs/promises");
  const { spawn } = await import("node:child_process");
  const { freePort } = await import("./tools.js");
  const dataDir = join(opts.dir, `${opts.name}-data`);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const log = await open(join(opts.dir, `${opts.name}.log`), "a");
  const child = spawn(
    process.execPath,
    [
      "--enable-source-maps",
      join(repoRoot, "dist", "src", "main", "tabbify.js"),
      "supervisor",
      "--name",
      opts.name,
      "--data",
      dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--node",
      opts.nodeUrl,
      "--mesh",
      "local",
      "--warm-spares",
      "0",
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/root",
        TABBIFY_NODE_KEY: opts.nodeKey,
        SUPERVISOR_API_KEY: opts.supervisorKey,
      },
      stdio: ["ignore", log.fd, log.fd],
    },
  );
  await log.close();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${opts.name} exited: see ${opts.dir}/${opts.name}.log`);
    const up = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`${opts.name} never answered /health`);
    await sleep(200);
  }
  return {
    url,
    dataDir,
    async stop() {
      // Whichever process serves it now (it may have replaced itself): found by its data dir.
      for (let i = 0; i < 100; i++) {
        const pids = rolePids("supervisor", dataDir);
        if (pids.length === 0) return;
        for (const pid of pids) {
          try {
            process.kill(pid, i < 60 ? "SIGTERM" : "SIGKILL");
          } catch {
            // already gone
          }
        }
        await sleep(200);
      }
    },
  };
}
