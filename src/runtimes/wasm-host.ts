/**
 * The wasm runtime's workload process: an HTTP server on HOST:PORT that runs each request through
 * a fresh WASI preview1 instance of one module, WAGI/CGI style (request as CGI env vars and
 * stdin, response as a CGI document on stdout). Started by WasmRuntime as
 * `node wasm-host.js --module <file> --timeout-ms <n> --memory-mb <n> [--workers <n>]`;
 * the module's own environment arrives as JSON in TABBIFY_WASM_ENV (not argv: it may hold secrets).
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { cgiEnv, parseCgiResponse } from "./cgi.js";
import type { WasmModule } from "./wasm-api.js";
import { checkWasiModule } from "./wasm-module.js";
import type { WorkerData, WorkerJob, WorkerResult } from "./wasm-worker.cjs";

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
const MAX_QUEUED = 1024;

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

  constructor(
    private readonly moduleBytes: Uint8Array,
    size: number,
    private readonly timeoutMs: number,
  ) {
    // One worker first, the rest once it is online: on a small host, booting them all at once
    // slows the first one down, and the first one is what cold start waits for.
    const first = this.spawnSlot();
    this.slots.push(first);
    first.worker.once("online", () => {
      for (let i = 1; i < size && !this.closed; i++) this.slots.push(this.spawnSlot());
    });
  }

  /** Hands the host's compiled module to the workers spawned from now on. */
  useCompiled(module: WasmModule): void {
    this.compiled = module;
  }

  private spawnSlot(): Slot {
    const workerData: WorkerData = this.compiled
      ? { compiled: this.compiled }
      : { moduleBytes: this.moduleBytes };
    const worker = new Worker(new URL("./wasm-worker.cjs", import.meta.url), { workerData });
    const slot: Slot = { worker };
    worker.on("message", (result: WorkerResult) => this.settle(slot, result));
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
    this.pump();
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      module: { type: "string" },
      "timeout-ms": { type: "string", default: "10000" },
      "memory-mb": { type: "string", default: "64" },
      workers: { type: "string" },
    },
  });
  if (!values.module) throw new Error("--module is required");
  const timeoutMs = Number(values["timeout-ms"]);
  const memoryMb = Number(values["memory-mb"]);
  const workers = Number(values.workers ?? Math.max(1, Math.min(4, availableParallelism())));
  const port = Number(process.env.PORT);
  const host = process.env.HOST ?? "127.0.0.1";
  const moduleEnv = JSON.parse(process.env.TABBIFY_WASM_ENV ?? "{}") as Record<string, string>;
  delete process.env.TABBIFY_WASM_ENV;

  const bytes = await readFile(values.module);
  // The first worker boots while this thread checks the module and starts listening: worker
  // boot is the largest part of cold start.
  const pool = new WorkerPool(bytes, workers, timeoutMs);
  const checked = await checkWasiModule(bytes, memoryMb).catch(async (err: unknown) => {
    await pool.close();
    throw err;
  });
  pool.useCompiled(checked.module);
  const programName = basename(values.module);
  let nextId = 1;

  const server = createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      if (!body) return answer(res, 413, `request body larger than ${MAX_BODY_BYTES} bytes`);
      // The request's own variables win over the app's configured env: a request must not be
      // able to pose as configuration, nor configuration as the request.
      const env = { ...moduleEnv, ...cgiEnv(req, body.length, port) };
      const running = pool.run({
        id: nextId++,
        args: [programName],
        env,
        body,
        maxOutputBytes: MAX_OUTPUT_BYTES,
      });
      if (!running) return answer(res, 503, "too many requests queued");
      const outcome = await running;
      if (!outcome.ok) {
        if ("timedOut" in outcome)
          return answer(res, 504, `request exceeded the time limit of ${timeoutMs} ms`);
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
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  process.stderr.write(`wasm-host: serving ${programName} on ${host}:${port} with ${workers} workers\n`);

  process.once("SIGTERM", () => {
    process.stderr.write("wasm-host: SIGTERM received, draining\n");
    server.close(() => {
      void pool.close().then(() => process.exit(0));
    });
    server.closeIdleConnections();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`wasm-host: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
