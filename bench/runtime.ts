/**
 * `npm run bench:runtime`, in one run, loopback only, printing ratios and never asserting timings:
 *  1. the data plane (issue 15): one workload under a real runner, wrk -c64 in alternating rounds,
 *     small and 1 MiB bodies: direct to the workload's private port; nginx configured by hand in
 *     front of it (the anchor); and Tabbify's `/app/<uuid>` through each data plane (node, nginx,
 *     haproxy, caddy) with the kernel hop (nftables DNAT to the workload) and with the runner's
 *     userspace hop. Ratios to the anchor, and each process's CPU per request;
 *  2. swaps under load: wrk -c64 through `/app/<uuid>` while 10 swaps happen, per plane and hop
 *     (swap-cells.ts): failed requests (must be 0) and p99 swapping vs at rest;
 *  3. cold start per runtime (process, wasm, docker when dockerd answers): a real supervisor
 *     process is asked to start an example app, and the clock runs from the POST to the first 200
 *     on the app address and through the node's `/app/<uuid>`; RSS of each runner and workload;
 *  4. on_request wakes (wake.ts).
 * `BENCH_ONLY=proxy|swaps|cold|wake` (comma-separated) runs parts alone; `BENCH_PLANES` and
 * `BENCH_SWAP_PLANES` pick the planes.
 *
 * Every server runs in its own process (this file re-executed with `--serve <role>`, or a real
 * `tabbify supervisor`), so the load generator, each proxy and the app do not share an event loop.
 * Targets are measured in alternating rounds and the median kept, and each process's CPU time per
 * request is read from /proc: on a busy machine req/s swings with the neighbours, CPU per request
 * much less.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { freeLoopbackPort } from "../src/core/net.js";
import { streamingProcessFlags } from "../src/core/node-flags.js";
import { sleep } from "../src/core/sleep.js";
import { type DataPlane, startNode } from "../src/node/index.js";
import {
  type ChargedProcess,
  type HandProxy,
  measure,
  median,
  type Row,
  startHandNginx,
  type Target,
  table,
  totalCpu,
} from "./runtime-measure.js";
import { measureSwaps, type SwapRow, swapTable } from "./swap-cells.js";
import { wakePart } from "./wake.js";

const MiB = 1024 * 1024;
// Two-second cells keep the whole bench near two minutes; rounds and medians absorb the noise.
const durationSecs = Number(process.env.BENCH_DURATION_SECS ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
const coldRuns = Number(process.env.BENCH_COLD_RUNS ?? 5);
const only = new Set((process.env.BENCH_ONLY ?? "proxy,swaps,cold,wake").split(",").map((p) => p.trim()));
const planes = (process.env.BENCH_PLANES ?? "node,nginx,haproxy,caddy").split(",").map((p) => p.trim());
const swapPlanes = (process.env.BENCH_SWAP_PLANES ?? "nginx,node").split(",").map((p) => p.trim());
/** dist/bench/runtime.js → the repository root. */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tabbifyEntry = join(repoRoot, "dist", "src", "main", "tabbify.js");

interface Served {
  url: string;
  /** The nginx master behind a node with the nginx data plane. */
  edgePid?: number;
}

/** Prints the one line the parent waits for. */
function announce(served: Served): void {
  process.stdout.write(`${JSON.stringify(served)}\n`);
}

/**
 * The app every proxy under test forwards to: `/1m` answers 1 MiB, `/port` the port it serves
 * on (so a swap's target can be told apart), anything else `hello\n`.
 */
function benchApp(port: number): http.Server {
  const big = Buffer.alloc(MiB, 0x61);
  return http.createServer((req, res) => {
    req.resume();
    // Reached directly the path keeps its /app/<uuid> prefix; through a proxy it does not.
    if (req.url?.endsWith("/1m")) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": big.length });
      res.end(big);
    } else {
      const text = req.url?.endsWith("/port") ? String(port) : "hello\n";
      res.writeHead(200, { "content-type": "text/plain", "content-length": text.length });
      res.end(text);
    }
  });
}

/** A node with the data plane `BENCH_DATA_PLANE`, with `uuids` (comma-separated) on its roster. */
async function serveNode(uuids: string): Promise<void> {
  // The key comes from the parent: the bench's supervisors and their runners register with it too.
  const nodeKey = process.env.TABBIFY_NODE_KEY ?? randomUUID();
  const dataPlane = (process.env.BENCH_DATA_PLANE ?? "node") as DataPlane;
  // One engine worker, like the hand-configured anchor's one nginx worker.
  const node = await startNode({
    host: "127.0.0.1",
    port: 0,
    nodeKey,
    httpLogLevel: "silent",
    dataPlane,
    edgeWorkers: 1,
  });
  // Roster entries that never expire during the bench: re-registered well inside the timeout.
  const register = () => {
    for (const uuid of uuids.split(",").filter(Boolean))
      node.coordinator.register({
        kind: "runner",
        name: uuid,
        app_uuid: uuid,
        address: `${deriveAppLoopback(uuid)}:${APP_PORT}`,
        ula: deriveAppLoopback(uuid),
        version: "bench",
        tags: ["runner"],
      });
  };
  register();
  setInterval(register, 10_000);
  await node.edge?.settle();
  process.once("SIGTERM", () => void node.close().then(() => process.exit(0)));
  const edgePid = node.edge?.pid();
  announce({ url: node.url, ...(edgePid ? { edgePid } : {}) });
}

/**
 * The data-plane bench's workload, run by a real runner through the process runtime: the bench app
 * on the runner's HOST/PORT, plus `/port` so the bench can reach the private port directly.
 */
async function serveWorkload(): Promise<void> {
  const port = Number(process.env.PORT);
  const server = benchApp(port);
  await new Promise<void>((r) => server.listen(port, process.env.HOST ?? "127.0.0.1", r));
  process.once("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}

function startChild(
  role: string,
  uuid: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; url: string; edgePid?: number }> {
  // Every proxy under test gets the same V8 flags our proxying processes run with, so the
  // comparison is of the proxy code, not of heap sizing.
  const child = spawn(
    process.execPath,
    [...streamingProcessFlags, fileURLToPath(import.meta.url), "--serve", role, uuid],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    },
  );
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve({ child, ...(JSON.parse(line) as Served) }));
    child.once("exit", (code) => reject(new Error(`${role} exited early (code ${code})`)));
  });
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGTERM");
  await exited;
}

/** Resident set size of one process in MiB, from /proc (undefined once it is gone). */
function rssMiB(pid: number | null | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

const mib = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));

/** A real `tabbify supervisor` process on a temp data dir, registered with the bench's node. */
class BenchSupervisor {
  private child: ChildProcess | undefined;
  private output = "";
  port = 0;
  readonly apiKey = randomBytes(32).toString("base64url");

  private constructor(readonly dataDir: string) {}

  static async start(nodeUrl: string, nodeKey: string, extraArgs: string[] = []): Promise<BenchSupervisor> {
    const sup = new BenchSupervisor(await mkdtemp(join(tmpdir(), "tabbify-bench-sup-")));
    // The supervisor reads its API key from <data>/api.key; the bench writes it first to know it.
    await writeFile(join(sup.dataDir, "api.key"), `${sup.apiKey}\n`, { mode: 0o600 });
    sup.port = await freeLoopbackPort();
    const child = spawn(
      process.execPath,
      [
        tabbifyEntry,
        "supervisor",
        "--name",
        "bench",
        "--data",
        sup.dataDir,
        "--listen",
        `127.0.0.1:${sup.port}`,
        "--mesh",
        "local",
        "--node",
        nodeUrl,
        ...extraArgs,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TABBIFY_NODE_KEY: nodeKey } },
    );
    sup.child = child;
    const keep = (d: Buffer) => {
      sup.output = (sup.output + d.toString()).slice(-8192);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    // ~3 s on an idle machine; many times that at a load of 20 and more.
    const end = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the supervisor exited: ${sup.output}`);
      const ok = await fetch(`${sup.base}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return sup;
      if (Date.now() > end) throw new Error(`the supervisor did not answer /health: ${sup.output}`);
      await sleep(50);
    }
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Until the supervisor is at rest: its warm spare booted (with a settle for its prewarm) and none booting. */
  async spareAtRest(): Promise<void> {
    const end = Date.now() + 30_000;
    for (;;) {
      const { json } = await this.call("GET", "/health");
      const spares = json.warm_spares as { ready: number; booting: number } | undefined;
      if (spares && spares.ready > 0 && spares.booting === 0) break;
      if (Date.now() > end) throw new Error(`no warm spare got ready: ${JSON.stringify(spares)}`);
      await sleep(25);
    }
    // A spare answers once its runner modules are loaded; its standby wasm host boots on beside it.
    await sleep(500);
  }

  get pid(): number | undefined {
    return this.child?.pid;
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
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    try {
      return { status: res.status, json: JSON.parse(text) as Record<string, unknown> };
    } catch {
      return { status: res.status, json: { text } };
    }
  }

  /** Purges every app still here (runners outlive their supervisor), then stops the supervisor. */
  async close(): Promise<void> {
    try {
      const { json } = await this.call("GET", "/v1/apps");
      for (const app of (json.apps as { uuid: string }[] | undefined) ?? []) {
        await this.call("POST", `/v1/apps/${app.uuid}/purge`).catch(() => {});
      }
    } catch {
      // the supervisor is gone already
    }
    if (this.child) await stopChild(this.child);
    if (!process.env.BENCH_KEEP) await rm(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Polls `url` on fresh connections until it answers 200; returns the time since `t0`. A refused
 * connection or a 503 from a runner still starting costs well under a millisecond, so the poll is
 * tight (5 ms): the figure is the workload's, not the poller's.
 */
async function firstOk(
  url: string,
  t0: number,
  gaveUp: { reason?: string },
  timeoutMs = 30_000,
): Promise<number> {
  const u = new URL(url);
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.get(
        { host: u.hostname, port: u.port, path: u.pathname + u.search, agent: false, timeout: 2_000 },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", () => resolve(0));
        },
      );
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve(0));
    });
    const now = performance.now();
    if (status === 200) return now - t0;
    if (gaveUp.reason) throw new Error(gaveUp.reason);
    if (now - t0 > timeoutMs) throw new Error(`${url} gave no 200 within ${timeoutMs} ms`);
    await sleep(5);
  }
}

interface ColdCase {
  runtime: string;
  spec: Record<string, unknown>;
  path: string;
}

interface ColdSample {
  apiMs: number;
  directMs: number;
  nodeMs: number;
  runnerRss: number | undefined;
  workloadRss: number | undefined;
}

/** One start → first 200, on the app address and through the node; then the app is purged. */
async function coldStart(sup: BenchSupervisor, nodeBase: string, c: ColdCase): Promise<ColdSample> {
  const uuid = randomUUID();
  const gaveUp: { reason?: string } = {};
  const t0 = performance.now();
  let apiMs = 0;
  const started = sup.call("POST", `/v1/apps/${uuid}/start`, c.spec).then((r) => {
    apiMs = performance.now() - t0;
    if (r.status !== 200)
      gaveUp.reason = `start ${c.runtime} answered ${r.status}: ${JSON.stringify(r.json)}`;
    return r;
  });
  try {
    const [directMs, nodeMs] = await Promise.all([
      firstOk(`http://${deriveAppLoopback(uuid)}:${APP_PORT}${c.path}`, t0, gaveUp),
      firstOk(`${nodeBase}/app/${uuid}${c.path}`, t0, gaveUp),
    ]);
    await started;
    const { json } = await sup.call("GET", `/v1/apps/${uuid}`);
    return {
      apiMs,
      directMs,
      nodeMs,
      runnerRss: rssMiB(json.pid as number | null),
      workloadRss: rssMiB(json.workload_pid as number | null),
    };
  } finally {
    await started.catch(() => {});
    await sup.call("POST", `/v1/apps/${uuid}/purge`).catch(() => {});
  }
}

const BENCH_IMAGE = "tabbify-bench-hello:1";

/** The docker case when the supervisor says docker works: examples/hello-docker on a scratch image. */
async function dockerCase(sup: BenchSupervisor): Promise<ColdCase | string> {
  const { json } = await sup.call("GET", "/health");
  if (!(json.tags as string[] | undefined)?.includes("docker"))
    return "dockerd does not answer: docker skipped";
  if (spawnSync("docker", ["image", "inspect", BENCH_IMAGE], { stdio: "ignore" }).status !== 0) {
    try {
      const { buildScratchImage } = await import("../test/support/tools.js");
      const script = await readFile(join(repoRoot, "examples", "hello-docker", "start.sh"), "utf8");
      // start.sh traps SIGTERM, so each purge stops the container at once, not after a grace period.
      await buildScratchImage(BENCH_IMAGE, { command: ["sh", "/start.sh"], files: { "/start.sh": script } });
    } catch (err) {
      return `cannot build ${BENCH_IMAGE}: ${(err as Error).message}`;
    }
  }
  return { runtime: "docker", spec: { runtime: "docker", image: BENCH_IMAGE }, path: "/" };
}

async function coldPart(
  sup: BenchSupervisor,
  spareless: BenchSupervisor,
  nodeBase: string,
  nodePid: number,
): Promise<void> {
  const cases: ColdCase[] = [
    {
      runtime: "process",
      spec: {
        runtime: "process",
        artifact_dir: join(repoRoot, "examples", "hello-node"),
        command: ["node", "server.js"],
      },
      path: "/",
    },
    {
      runtime: "wasm",
      spec: { runtime: "wasm", artifact_dir: join(repoRoot, "examples", "hello-wasm"), entry: "hello.wasm" },
      path: "/",
    },
  ];
  const docker = await dockerCase(sup);
  if (typeof docker === "string") process.stdout.write(`${docker}\n`);
  else cases.push(docker);

  process.stdout.write(
    `\n## 3. cold start: POST /v1/apps/<uuid>/start on a real supervisor → first 200, median of ${coldRuns} runs (min–max), purged in between; load average ${loadavg()[0]!.toFixed(1)}\n` +
      "   API = the start call returned; app addr = first 200 on <app address>:8730; via node = first 200 through the node's /app/<uuid>\n" +
      "   spare = a supervisor at rest (its warm spare runner booted: the default); none = --warm-spares 0, or starts faster than spares boot\n",
  );
  const modes = [
    { label: "spare", sup, atRest: () => sup.spareAtRest() },
    { label: "none", sup: spareless, atRest: async () => {} },
  ];
  const rows: string[][] = [];
  for (const c of cases) {
    for (const mode of modes) {
      // One unmeasured start warms the page cache and the supervisor's code paths.
      await mode.atRest();
      await coldStart(mode.sup, nodeBase, c);
      const samples: ColdSample[] = [];
      for (let i = 0; i < coldRuns; i++) {
        await mode.atRest();
        samples.push(await coldStart(mode.sup, nodeBase, c));
      }
      const spread = (pick: (s: ColdSample) => number) => {
        const v = samples.map(pick);
        return `${median(v).toFixed(0)} (${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)})`;
      };
      const direct = median(samples.map((s) => s.directMs));
      rows.push([
        c.runtime,
        mode.label,
        spread((s) => s.apiMs),
        spread((s) => s.directMs),
        spread((s) => s.nodeMs),
        c.runtime === "docker" ? "-" : (direct / 300).toFixed(2),
        mib(median(samples.map((s) => s.runnerRss ?? Number.NaN))),
        mib(median(samples.map((s) => s.workloadRss ?? Number.NaN))),
      ]);
    }
  }
  process.stdout.write(
    table(
      [
        "runtime",
        "runner",
        "API ms",
        "app addr ms",
        "via node ms",
        "app addr / 300 ms aim",
        "runner RSS MiB",
        "workload RSS MiB",
      ],
      rows,
    ),
  );
  process.stdout.write(
    `   node RSS ${mib(rssMiB(nodePid))} MiB, supervisor RSS ${mib(rssMiB(sup.pid))} MiB; ` +
      "wasm workload = the wasm-host process with its worker threads; docker workload = the container's init\n",
  );
}

/** One app under a real runner: its uuid, the runner and workload pids, the workload's private port. */
interface BenchApp {
  uuid: string;
  runnerPid: number;
  workloadPid: number;
  privatePort: number;
  hop: string;
}

async function startBenchApp(sup: BenchSupervisor): Promise<BenchApp> {
  const uuid = randomUUID();
  const self = fileURLToPath(import.meta.url);
  const spec = {
    runtime: "process",
    artifact_dir: dirname(self),
    command: [process.execPath, self, "--serve", "workload", uuid],
  };
  const started = await sup.call("POST", `/v1/apps/${uuid}/start`, spec);
  if (started.status !== 200)
    throw new Error(`bench workload did not start: ${JSON.stringify(started.json)}`);
  const { json } = await sup.call("GET", `/v1/apps/${uuid}`);
  const appUrl = `http://${deriveAppLoopback(uuid)}:${APP_PORT}`;
  return {
    uuid,
    runnerPid: json.pid as number,
    workloadPid: json.workload_pid as number,
    privatePort: Number(await (await fetch(`${appUrl}/port`)).text()),
    hop: String(json.hop ?? "userspace"),
  };
}

const ANCHOR = "nginx by hand → workload";

function printPlanes(rows: Row[], labels: string[]): void {
  const header = ["body", "target", "req/s", "× anchor", "p99 ms", "cpu µs/req", ...labels, "errors"];
  const body = rows.map((r) => {
    const anchor = rows.find((x) => x.body === r.body && x.target === ANCHOR);
    return [
      r.body,
      r.target,
      r.rps.toFixed(0),
      anchor ? (r.rps / anchor.rps).toFixed(2) : "-",
      r.p99Ms.toFixed(2),
      totalCpu(r).toFixed(0),
      ...labels.map((l) => (r.cpuUs[l] === undefined ? "" : r.cpuUs[l]!.toFixed(0))),
      String(r.errors),
    ];
  });
  process.stdout.write(table(header, body, 2));
}

/**
 * The data plane (issue 15): one workload per hop under a real supervisor (`--kernel-hop on` and
 * `off`), every plane's node with both apps on its roster, the hand-configured nginx anchor in
 * front of the kernel app's workload, and wrk in alternating rounds over all of them.
 */
async function planesPart(nodeBase: string, nodeKey: string): Promise<void> {
  const sups: BenchSupervisor[] = [];
  const nodes: ChildProcess[] = [];
  let anchor: HandProxy | string | undefined;
  try {
    const apps: BenchApp[] = [];
    for (const hop of ["on", "off"]) {
      try {
        const sup = await BenchSupervisor.start(nodeBase, nodeKey, [
          "--kernel-hop",
          hop,
          "--warm-spares",
          "0",
        ]);
        sups.push(sup);
        apps.push(await startBenchApp(sup));
      } catch (err) {
        process.stdout.write(`kernel hop ${hop}: not measured: ${(err as Error).message.split("\n")[0]}\n`);
      }
    }
    const first = apps[0];
    if (!first) throw new Error("no bench app started");
    const targets: Target[] = [
      {
        name: "direct → workload",
        url: `http://127.0.0.1:${first.privatePort}/app/${first.uuid}`,
        procs: [{ label: "workload", pid: first.workloadPid }],
      },
    ];
    anchor = await startHandNginx(`127.0.0.1:${first.privatePort}`, first.uuid);
    if (typeof anchor === "string") process.stdout.write(`anchor: ${anchor}\n`);
    else
      targets.push({
        name: ANCHOR,
        url: anchor.url,
        procs: [
          { label: "engine", pid: anchor.pid, tree: true },
          { label: "workload", pid: first.workloadPid },
        ],
      });
    for (const plane of planes) {
      const node = await startChild("node", apps.map((a) => a.uuid).join(","), {
        BENCH_DATA_PLANE: plane,
        TABBIFY_NODE_KEY: nodeKey,
      }).catch((err: Error) => err);
      if (node instanceof Error) {
        process.stdout.write(`data plane ${plane}: not measured: ${node.message}\n`);
        continue;
      }
      nodes.push(node.child);
      for (const app of apps) {
        const procs: ChargedProcess[] = [{ label: "node", pid: node.child.pid ?? 0 }];
        if (node.edgePid) procs.push({ label: "engine", pid: node.edgePid, tree: true });
        procs.push({ label: "runner", pid: app.runnerPid }, { label: "workload", pid: app.workloadPid });
        targets.push({ name: `tabbify ${plane}, ${app.hop} hop`, url: `${node.url}/app/${app.uuid}`, procs });
      }
    }
    process.stdout.write(
      `\n## 1. data plane: wrk -t1 -c${connections}, ${rounds} alternating rounds of ${durationSecs} s per cell (median kept); load average ${loadavg()[0]!.toFixed(1)}\n` +
        "   one engine worker everywhere; the workload is the same Node app under a real runner; cpu µs/req per process\n" +
        "   (engine = master + workers; the app is reached at /app/<uuid>/… and sees the path after it)\n",
    );
    const rows = await measure(targets, { rounds, secs: durationSecs, connections });
    printPlanes(rows, ["node", "engine", "runner", "workload"]);
  } finally {
    if (anchor && typeof anchor !== "string") await anchor.stop();
    for (const c of nodes) await stopChild(c);
    for (const sup of sups) await sup.close();
  }
}

/** Swaps under load through `/app/<uuid>`, per plane and hop (swap-cells.ts). */
async function swapsPart(): Promise<void> {
  process.stdout.write(
    `\n## 2. swaps under load: wrk -t1 -c${connections} through /app/<uuid> while ${process.env.BENCH_SWAPS ?? 10} swaps happen; failed must be 0; load average ${loadavg()[0]!.toFixed(1)}\n`,
  );
  const rows: SwapRow[] = [];
  for (const plane of swapPlanes) {
    for (const hop of ["kernel", "userspace"]) {
      try {
        rows.push(await measureSwaps(plane, hop));
      } catch (err) {
        process.stdout.write(`${plane}/${hop}: not measured: ${(err as Error).message.split("\n")[0]}\n`);
      }
    }
  }
  process.stdout.write(swapTable(rows));
}

async function main(): Promise<void> {
  if (spawnSync("sh", ["-c", "command -v wrk"]).status !== 0) {
    process.stderr.write("bench:runtime needs wrk: apt-get install -y wrk\n");
    process.exitCode = 1;
    return;
  }
  const started = performance.now();
  const nodeKey = randomUUID();
  const ours = await startChild("node", "", { TABBIFY_NODE_KEY: nodeKey });
  const nodePid = ours.child.pid ?? 0;
  const nodeBase = new URL(ours.url).origin;
  let sup: BenchSupervisor | undefined;
  let spareless: BenchSupervisor | undefined;
  try {
    process.stdout.write(
      `bench:runtime: loopback, ${cpus().length} cores, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}, node ${process.version}\n`,
    );
    if (only.has("proxy")) await planesPart(nodeBase, nodeKey);
    if (only.has("swaps")) await swapsPart();
    if (only.has("cold")) {
      sup = await BenchSupervisor.start(nodeBase, nodeKey);
      spareless = await BenchSupervisor.start(nodeBase, nodeKey, ["--warm-spares", "0"]);
      await coldPart(sup, spareless, nodeBase, nodePid);
    }
    if (only.has("wake")) {
      sup ??= await BenchSupervisor.start(nodeBase, nodeKey);
      process.stdout.write(
        `\n## 4. on_request: first request after idle (wake included), median of ${coldRuns} wakes (min–max); runner RSS while idle\n`,
      );
      const rows = await wakePart(sup, repoRoot, coldRuns, rssMiB);
      process.stdout.write(
        table(
          [
            "runtime",
            "first request ms",
            "aim ms",
            "app booted alone ms",
            "idle runner RSS MiB",
            "booted ahead RSS MiB",
          ],
          rows,
        ),
      );
    }
    process.stdout.write(
      `\nbench:runtime took ${((performance.now() - started) / 1000).toFixed(0)} s; load average now ${loadavg()[0]!.toFixed(1)}\n`,
    );
  } finally {
    await sup?.close();
    await spareless?.close();
    await stopChild(ours.child);
  }
}

const serveIndex = process.argv.indexOf("--serve");
if (serveIndex !== -1) {
  const role = process.argv[serveIndex + 1];
  const uuid = process.argv[serveIndex + 2] ?? "";
  const roles: Record<string, (uuid: string) => Promise<void>> = {
    node: serveNode,
    workload: serveWorkload,
  };
  const serve = role ? roles[role] : undefined;
  if (!serve) throw new Error(`unknown --serve role ${role}`);
  await serve(uuid);
} else {
  await main();
}
