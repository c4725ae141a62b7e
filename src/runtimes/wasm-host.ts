/**
 * The wasm runtime's workload process: an HTTP server on HOST:PORT that runs each request through
 * a fresh WASI preview1 instance of one module, WAGI/CGI style (request as CGI env vars and
 * stdin, response as a CGI document on stdout). Started by WasmRuntime as
 * `node wasm-host.js [--standby]`: it boots its first worker thread, then reads one JSON line
 * from stdin, a HostStartConfig (module, limits, HOST/PORT, the app's env, cwd), and serves. The
 * app's env travels only through that pipe, so it shows in neither /proc/<pid>/cmdline nor
 * /proc/<pid>/environ. A cold start writes the line at once; a `--standby` host (prewarm) was
 * booted before any app was known and gets it when one comes, or exits quietly if its stdin
 * closes first (the runner that prewarmed it is gone or ran another kind).
 *
 * An `armed` config (a sleeping app's host, WasmRuntime.prewarmFor) is loaded ahead: the module
 * is read, checked and compiled into the first worker, then the host waits for a `go` line on
 * stdin before it listens (or exits quietly when stdin closes first). A standby says how far it
 * is on fd 3, a line each: `ready`, `armed`, `serving`.
 */
import { closeSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, request, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { cgiEnv, parseCgiResponse } from "./cgi.js";
import type { WasmModule } from "./wasm-api.js";
import { checkWasiModule } from "./wasm-module.js";
import type { ModuleLoaded, ModuleSource, WorkerData, WorkerJob, WorkerResult } from "./wasm-worker.cjs";

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
const MAX_QUEUED = 1024;
/** The config line carries the app's env; anything longer is not a config. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const workerScript = new URL("./wasm-worker.cjs", import.meta.url);

/** What a host serves and how. */
interface HostConfig {
  /** Path of the module file (absolute, or relative to the cwd). */
  module: string;
  timeoutMs: number;
  memoryMb: number;
  /** Pool size; defaults to the available parallelism, at most 4. */
  workers?: number;
  host: string;
  port: number;
  /** The app's env, seen by the module beside the request's CGI variables. */
  env: Record<string, string>;
  /** Stateful apps: guest path → host directory, preopened for every request's WASI instance. */
  preopens?: Record<string, string>;
}

/** The line a host reads from stdin: a HostConfig plus the directory to serve from. */
export interface HostStartConfig extends HostConfig {
  cwd: string;
  /** The app's user: the host switches to it (dropping every group) before it loads the module. */
  uid?: number;
  gid?: number;
  /** Load the module, then wait for `go` on stdin before listening. */
  armed?: boolean;
}

/**
 * The host's first worker, booted before the host knew its module. `take` hands it over (undefined if
 * it died meanwhile); its first message must then be a ModuleSource.
 */
interface EarlyWorker {
  take(): Worker | undefined;
  /** Resolves once the worker runs (or has died). */
  online: Promise<void>;
}

/**
 * `(module (memory (export "memory") 1 1) (func (export "_start")))`: a WASI module that does
 * nothing, which a standby runs through the same steps as an app's module to initialise them.
 */
const WARM_UP_MODULE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 1, 1, 1, 7, 19, 2, 6, 109, 101, 109,
  111, 114, 121, 2, 0, 6, 95, 115, 116, 97, 114, 116, 0, 0, 10, 4, 1, 2, 0, 11,
]);

type JobOutcome =
  | WorkerResult
  | { id: number; ok: false; timedOut: true }
  | { id: number; ok: false; crashed: string };

interface Slot {
  worker: Worker;
  job?: { id: number; finish: (outcome: JobOutcome) => void; timer: NodeJS.Timeout };
}

/**
 * A fixed set of worker threads, one request each at a time. A request that runs past the
 * time limit gets its worker terminated and replaced; the others are not disturbed.
 */
class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: { job: WorkerJob; finish: (o: JobOutcome) => void }[] = [];
  private closed = false;
  /** Set once the host has checked the module: later workers share this instead of compiling. */
  private compiled: WasmModule | undefined;
  /** Spawns the workers after the first, when that waits for the first answer; then undefined. */
  private growAfterFirstAnswer: (() => void) | undefined;
  /** Resolves once the first worker has its module compiled (or has died). */
  readonly firstLoaded: Promise<void>;
  private markLoaded: () => void = () => {};

  /** `earlyWorker`: the worker booted before the module was known becomes the first slot. */
  constructor(
    private readonly moduleBytes: Uint8Array,
    size: number,
    private readonly timeoutMs: number,
    earlyWorker?: EarlyWorker,
    compiled?: WasmModule,
  ) {
    this.firstLoaded = new Promise((resolve) => {
      this.markLoaded = resolve;
    });
    this.compiled = compiled;
    // One worker first, the rest later: on a small host, booting them all at once slows the first
    // one down, and the first one is what cold start waits for.
    const grow = () => {
      for (let i = 1; i < size && !this.closed; i++) this.slots.push(this.spawnSlot());
    };
    const early = earlyWorker?.take();
    if (early) {
      const source: ModuleSource = compiled ? { compiled } : { moduleBytes };
      // Posted before any job, and a port delivers in order: the worker compiles, then serves.
      early.postMessage(source);
      this.slots.push(this.slotFor(early));
      // It is up already, so the others would boot while it answers the first request and slow
      // that answer down (measured: a standby's first answer in ~60 ms instead of ~35).
      this.growAfterFirstAnswer = grow;
    } else {
      const first = this.spawnSlot();
      this.slots.push(first);
      first.worker.once("online", grow);
    }
  }

  /** Hands the host's compiled module to the workers spawned from now on. */
  useCompiled(module: WasmModule): void {
    this.compiled = module;
  }

  private spawnSlot(): Slot {
    const workerData: WorkerData = this.compiled
      ? { compiled: this.compiled }
      : { moduleBytes: this.moduleBytes };
    return this.slotFor(new Worker(workerScript, { workerData }));
  }

  private slotFor(worker: Worker): Slot {
    const slot: Slot = { worker };
    worker.once("exit", () => this.markLoaded());
    worker.on("message", (result: WorkerResult | ModuleLoaded) => {
      if ("loaded" in result) this.markLoaded();
      else this.settle(slot, result);
    });
    worker.on("error", (err) =>
      this.settle(slot, { id: slot.job?.id ?? -1, ok: false, crashed: err.message }),
    );
    worker.on("exit", () => {
      if (this.closed) return;
      if (slot.job) this.settle(slot, { id: slot.job.id, ok: false, crashed: "worker exited" });
      this.replace(slot);
    });
    return slot;
  }

  /** Takes a slot out of service (before its worker is gone, so nothing new is posted to it). */
  private replace(slot: Slot): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    this.slots[index] = this.spawnSlot();
    this.pump();
  }

  private settle(slot: Slot, outcome: JobOutcome): void {
    const job = slot.job;
    if (!job || job.id !== outcome.id) return;
    clearTimeout(job.timer);
    slot.job = undefined;
    job.finish(outcome);
    this.answered();
    this.pump();
  }

  private answered(): void {
    const grow = this.growAfterFirstAnswer;
    this.growAfterFirstAnswer = undefined;
    // Once this turn's I/O, the answer, has gone out.
    if (grow) setImmediate(grow);
  }

  run(job: WorkerJob): Promise<JobOutcome> | undefined {
    if (this.queue.length >= MAX_QUEUED) return undefined;
    return new Promise((finish) => {
      this.queue.push({ job, finish });
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const next = this.queue.shift()!;
      const timer = setTimeout(() => {
        // Terminating is the only way to stop a wasm loop; the slot leaves service first so the
        // next request goes to its fresh replacement, not to the dying worker.
        const job = slot.job;
        slot.job = undefined;
        this.replace(slot);
        void slot.worker.terminate();
        job?.finish({ id: next.job.id, ok: false, timedOut: true });
        this.answered();
      }, this.timeoutMs);
      slot.job = { id: next.job.id, finish: next.finish, timer };
      slot.worker.postMessage(next.job);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** Tells the runner in front which limit a request hit (it reports the last one in its health). */
export const LIMIT_HEADER = "x-tabbify-limit";

function answer(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(`${message}\n`);
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/**
 * Reads and checks the module and hands it to the worker pool. `ahead` (an armed host, which has
 * time): compiled here first, then given to the first worker compiled, and done once that worker
 * has it. Otherwise the first worker compiles it itself while this thread checks it: worker boot
 * is the largest part of cold start.
 */
async function load(
  config: HostConfig,
  earlyWorker: EarlyWorker | undefined,
  ahead: boolean,
): Promise<WorkerPool> {
  const workers = config.workers ?? Math.max(1, Math.min(4, availableParallelism()));
  const bytes = await readFile(config.module);
  if (ahead) {
    const checked = await checkWasiModule(bytes, config.memoryMb);
    const pool = new WorkerPool(bytes, workers, config.timeoutMs, earlyWorker, checked.module);
    await pool.firstLoaded;
    return pool;
  }
  const pool = new WorkerPool(bytes, workers, config.timeoutMs, earlyWorker);
  const checked = await checkWasiModule(bytes, config.memoryMb).catch(async (err: unknown) => {
    await pool.close();
    throw err;
  });
  pool.useCompiled(checked.module);
  return pool;
}

/** What a request is served with: the app's module run by `run`, with the app's env and limits. */
interface Served {
  env: Record<string, string>;
  port: number;
  programName: string;
  timeoutMs: number;
  preopens: Record<string, string> | undefined;
  nextId(): number;
  run(job: WorkerJob): Promise<JobOutcome> | undefined;
}

/** One request: CGI env and stdin in, the module run, its CGI document out as the response. */
async function handleRequest(req: IncomingMessage, res: ServerResponse, app: Served): Promise<void> {
  try {
    const body = await readBody(req);
    if (!body) return answer(res, 413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    // The request's own variables win over the app's configured env: a request must not be
    // able to pose as configuration, nor configuration as the request.
    const env = { ...app.env, ...cgiEnv(req, body.length, app.port) };
    const running = app.run({
      id: app.nextId(),
      args: [app.programName],
      env,
      body,
      maxOutputBytes: MAX_OUTPUT_BYTES,
      ...(app.preopens ? { preopens: app.preopens } : {}),
    });
    if (!running) return answer(res, 503, "too many requests queued");
    const outcome = await running;
    if (!outcome.ok) {
      if ("timedOut" in outcome) {
        // The reason the runner's log and status carry: fuel_per_request maps to this budget.
        process.stderr.write(
          `${JSON.stringify({ level: "warn", msg: "request over its fuel budget", reason: "fuel", budget_ms: app.timeoutMs })}\n`,
        );
        res.setHeader(LIMIT_HEADER, "fuel");
        return answer(
          res,
          504,
          `request exceeded its fuel budget (reason fuel): ${app.timeoutMs} ms of CPU time`,
        );
      }
      if ("crashed" in outcome) return answer(res, 502, `wasm worker failed: ${outcome.crashed}`);
      return answer(res, 500, `module trapped: ${outcome.error}`);
    }
    if (outcome.truncated) return answer(res, 502, `module wrote more than ${MAX_OUTPUT_BYTES} bytes`);
    const parsed = parseCgiResponse(Buffer.from(outcome.stdout));
    if (!parsed) {
      return answer(
        res,
        502,
        `module (exit code ${outcome.exitCode}) did not write a CGI response: header lines, a blank line, the body`,
      );
    }
    res.statusCode = parsed.status;
    res.statusMessage = STATUS_CODES[parsed.status] ?? "";
    for (const [name, value] of parsed.headers) res.appendHeader(name, value);
    res.end(parsed.body);
  } catch (err) {
    answer(res, 500, `wasm host error: ${(err as Error).message}`);
  }
}

async function serve(config: HostConfig, pool: WorkerPool): Promise<void> {
  const { timeoutMs, host, port } = config;
  const moduleEnv = config.env;
  const programName = basename(config.module);
  let nextId = 1;

  const served: Served = {
    env: moduleEnv,
    port,
    programName,
    timeoutMs,
    preopens: config.preopens,
    nextId: () => nextId++,
    run: (job) => pool.run(job),
  };
  const server = createServer((req, res) => void handleRequest(req, res, served));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  process.stderr.write(`wasm-host: serving ${programName} on ${host}:${port}\n`);

  process.once("SIGTERM", () => {
    process.stderr.write("wasm-host: SIGTERM received, draining\n");
    server.close(() => {
      void pool.close().then(() => process.exit(0));
    });
    server.closeIdleConnections();
  });
}

/**
 * Stdin, a line at a time: `next()` resolves with the next line, or undefined once stdin has
 * ended (or failed). `close()` when no more is wanted: what the host serves must not depend on
 * that pipe staying open.
 */
function stdinLines(): { next(): Promise<string | undefined>; close(): void } {
  const stdin = process.stdin;
  const lines: string[] = [];
  let buffered = "";
  let ended = false;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const onData = (chunk: string) => {
    buffered += chunk;
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      lines.push(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
    if (buffered.length > MAX_CONFIG_BYTES) {
      failed = new Error(`config line longer than ${MAX_CONFIG_BYTES} bytes`);
      close();
    }
    wake?.();
  };
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  const close = () => {
    stdin.off("data", onData).off("end", onEnd).off("error", onEnd).off("close", onEnd);
    stdin.destroy();
    ended = true;
  };
  stdin.setEncoding("utf8");
  stdin.on("data", onData).once("end", onEnd).once("error", onEnd).once("close", onEnd);
  return {
    close,
    async next() {
      for (;;) {
        if (failed) throw failed;
        const line = lines.shift();
        if (line !== undefined) return line;
        if (ended) return undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    },
  };
}

/** What `ps` shows for a host armed for its app, until its wake. */
const ARMED_TITLE = "tabbify wasm-host (armed; waiting for its wake)";

/** Tells the runtime how far a standby is (fd 3, a line each); best effort, as it may not listen. */
function say(line: "ready" | "armed" | "serving", last = false): void {
  try {
    writeSync(3, `${line}\n`);
    if (last) closeSync(3);
  } catch {}
}

function parseHostStartConfig(line: string): HostStartConfig {
  const raw = JSON.parse(line) as Record<string, unknown>;
  const fail = (what: string): never => {
    throw new Error(`config line: ${what}`);
  };
  const text = (name: string) =>
    typeof raw[name] === "string" ? raw[name] : fail(`${name} must be a string`);
  const number = (name: string) =>
    typeof raw[name] === "number" && Number.isFinite(raw[name])
      ? raw[name]
      : fail(`${name} must be a number`);
  const env = raw.env;
  if (typeof env !== "object" || env === null || Object.values(env).some((v) => typeof v !== "string"))
    fail("env must be a map of strings");
  const config: HostStartConfig = {
    module: text("module"),
    timeoutMs: number("timeoutMs"),
    memoryMb: number("memoryMb"),
    host: text("host"),
    port: number("port"),
    env: env as Record<string, string>,
    cwd: text("cwd"),
  };
  if (raw.workers !== undefined) config.workers = number("workers");
  if (raw.preopens !== undefined) {
    const preopens = raw.preopens;
    if (
      typeof preopens !== "object" ||
      preopens === null ||
      Object.values(preopens).some((v) => typeof v !== "string")
    )
      fail("preopens must be a map of strings");
    config.preopens = preopens as Record<string, string>;
  }
  if ((raw.uid === undefined) !== (raw.gid === undefined)) fail("uid and gid come together");
  if (raw.uid !== undefined) {
    config.uid = number("uid");
    config.gid = number("gid");
  }
  if (raw.armed !== undefined) {
    if (typeof raw.armed !== "boolean") fail("armed must be a boolean");
    config.armed = raw.armed as boolean;
  }
  return config;
}

/**
 * The host's head start: its first worker thread boots now (the largest part of a cold start
 * after node itself), and gets the module once there is one. A worker that dies before it is
 * taken is not handed over, and the pool starts a fresh one as on a normal start.
 */
function bootEarlyWorker(warmUp: boolean): EarlyWorker {
  const workerData: WorkerData = warmUp
    ? { moduleToFollow: true, warmUpModule: WARM_UP_MODULE }
    : { moduleToFollow: true };
  const worker = new Worker(workerScript, { workerData });
  let alive = true;
  const drop = () => {
    alive = false;
  };
  worker.once("error", drop).once("exit", drop);
  const online = new Promise<void>((resolve) => {
    worker
      .once("online", resolve)
      .once("error", () => resolve())
      .once("exit", () => resolve());
  });
  return {
    online,
    take: () => {
      worker.off("error", drop).off("exit", drop);
      return alive ? worker : undefined;
    },
  };
}

/**
 * What a host does besides booting its worker while it waits for its config, so that serving finds the code
 * it runs loaded and initialised: the module checks and the wasm compiler, file reads, and a
 * loopback listener (a first listen alone measured ~20 ms). Nothing here depends on the app.
 */
async function warmUp(): Promise<void> {
  await checkWasiModule(WARM_UP_MODULE, 1);
  await readFile(fileURLToPath(import.meta.url));
  // One request through the whole serving path (HTTP in, CGI env, CGI document out) with a
  // canned module answer: an app's first request otherwise pays for loading and compiling that
  // code.
  const canned = new TextEncoder().encode("Content-Type: text/plain\n\nwarm\n");
  const served: Served = {
    env: {},
    port: 0,
    programName: "warm-up",
    timeoutMs: 1_000,
    preopens: undefined,
    nextId: () => 0,
    run: (job) =>
      Promise.resolve({ id: job.id, ok: true, exitCode: 0, stdout: canned.slice(), truncated: false }),
  };
  const server = createServer((req, res) => void handleRequest(req, res, served));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/warm-up", agent: false }, (res) => {
        res.resume();
        res.once("end", resolve).once("error", reject);
      });
      req.once("error", reject);
      req.end();
    });
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { standby: { type: "boolean", default: false } } });
  // Warm-ups pay off only for a standby, which waits anyway; on a cold start they would compete
  // for the CPU with the boot they are meant to shorten (measured: ~100 ms slower on 2 cores).
  const earlyWorker = bootEarlyWorker(values.standby);
  // Best effort: a warm-up that fails only leaves the work to the first request.
  const warming = values.standby ? warmUp().catch(() => {}) : undefined;
  // The runtime that booted this standby waits for this line before it counts the standby ready.
  if (values.standby) Promise.all([warming, earlyWorker.online]).then(() => say("ready"));
  const stdin = stdinLines();
  const line = await stdin.next();
  if (line === undefined) {
    // A standby may rightly never get an app (its runner was assigned another kind, or died).
    if (values.standby) {
      process.stderr.write("wasm-host: standby: stdin closed without a config, exiting\n");
      process.exit(0);
    }
    throw new Error("stdin closed before the config line");
  }
  const { cwd, uid, gid, armed, ...config } = parseHostStartConfig(line);
  if (!armed) stdin.close();
  // A standby's argv says `--standby` for good; once it has its app, `ps` must not call it that.
  const servingTitle = "tabbify wasm-host (serving; booted as a standby)";
  if (values.standby) process.title = armed ? ARMED_TITLE : servingTitle;
  process.chdir(cwd);
  if (uid !== undefined && gid !== undefined) {
    // setuid(2) applies to every thread of the process, the early worker's too.
    if (!process.setgroups || !process.setgid || !process.setuid)
      throw new Error("this platform cannot switch to the app's user");
    process.setgroups([]);
    process.setgid(gid);
    process.setuid(uid);
  }
  await warming;
  const pool = await load(config, earlyWorker, armed === true);
  if (armed) {
    say("armed");
    const go = await stdin.next();
    stdin.close();
    if (go !== "go") {
      // The app was deployed anew or stopped while it slept: this host will never serve it.
      process.stderr.write("wasm-host: armed: stdin closed without a go, exiting\n");
      process.exit(0);
    }
    process.title = servingTitle;
  }
  await serve(config, pool);
  if (values.standby) say("serving", true);
}

main().catch((err: unknown) => {
  process.stderr.write(`wasm-host: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
