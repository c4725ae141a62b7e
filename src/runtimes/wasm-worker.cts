/**
 * One worker of the wasm host's pool: runs a request through a fresh WASI instance of the
 * module it was given. The host terminates this thread when a request overruns its time limit,
 * which is the only way to stop a wasm loop that never yields.
 *
 * CommonJS on purpose: a worker thread loading an ES module first sets up the ESM loader, which
 * measured ~10–15 ms of the ~40 ms a worker takes to become ready, and the first worker's boot
 * is on the cold-start path. So this file imports no ES module at runtime (types only).
 */

import { WASI } from "node:wasi";
import { parentPort, workerData } from "node:worker_threads";
import type { wasmApi as WasmApi, WasmMemory, WasmModule } from "./wasm-api.js";

const wasmApi = (globalThis as unknown as { WebAssembly: typeof WasmApi }).WebAssembly;

/** The bytes (first worker: it compiles while the host checks them) or the host's compiled module. */
export type ModuleSource = { moduleBytes: Uint8Array } | { compiled: WasmModule };

/**
 * A host boots its first worker before it knows the module (`moduleToFollow`): that worker's
 * first message is then its ModuleSource, and every later one a WorkerJob. A standby's worker,
 * which has time to spare, meanwhile runs `warmUpModule`, a module that does nothing, once.
 */
export type WorkerData = ModuleSource | { moduleToFollow: true; warmUpModule?: Uint8Array };

export interface WorkerJob {
  id: number;
  args: string[];
  env: Record<string, string>;
  body: Uint8Array;
  maxOutputBytes: number;
  /** guest path → host directory (a stateful app's data). */
  preopens?: Record<string, string>;
}

/** What a worker answers once it has the module it was told would follow. */
export type ModuleLoaded = { loaded: true };

export type WorkerResult =
  | { id: number; ok: true; exitCode: number; stdout: Uint8Array; truncated: boolean }
  | { id: number; ok: false; error: string };

// WASI errno values (preview1).
const ERRNO_SUCCESS = 0;
const ERRNO_FBIG = 22;

// The first worker compiles here rather than waiting for the host's compile, so it boots while the
// host is still checking the module (the host refuses to serve one that fails its checks); later
// workers get the host's compiled module, shared, and skip compiling.
const moduleOf = (source: ModuleSource): WasmModule =>
  "compiled" in source ? source.compiled : new wasmApi.Module(source.moduleBytes);
const data = workerData as WorkerData;
let compiled: WasmModule | undefined = "moduleToFollow" in data ? undefined : moduleOf(data);
const port = parentPort;
if (!port) throw new Error("wasm-worker must run as a worker thread");

type WasiFunction = (...args: number[]) => number;

function runJob(module: WasmModule, job: WorkerJob): WorkerResult {
  const wasi = new WASI({
    version: "preview1",
    args: job.args,
    env: job.env,
    returnOnExit: true,
    ...(job.preopens ? { preopens: job.preopens } : {}),
  });
  const native = wasi.wasiImport as Record<string, WasiFunction>;
  let memory: WasmMemory | undefined;
  const stdout: Uint8Array[] = [];
  let stdoutBytes = 0;
  let truncated = false;
  let stdinOffset = 0;

  const imports: Record<string, WasiFunction> = {};
  // Calling the native functions through a JS wrapper is measurably faster per instantiation
  // than handing them to WebAssembly.Instance directly (FINDINGS: ~140 µs vs ~500 µs).
  for (const [name, f] of Object.entries(native)) imports[name] = (...a) => f(...a);

  // stdin and stdout are the request and the response, so they are served from memory here
  // instead of real file descriptors.
  imports.fd_write = (fd, iovs, iovsLen, nwrittenPtr) => {
    if (fd !== 1 && fd !== 2) return native.fd_write!(fd, iovs, iovsLen, nwrittenPtr);
    const view = new DataView(memory!.buffer);
    let written = 0;
    for (let i = 0; i < iovsLen; i++) {
      const ptr = view.getUint32(iovs + i * 8, true);
      const len = view.getUint32(iovs + i * 8 + 4, true);
      const bytes = new Uint8Array(memory!.buffer, ptr, len);
      if (fd === 2) {
        process.stderr.write(Buffer.from(bytes));
      } else {
        if (stdoutBytes + len > job.maxOutputBytes) {
          truncated = true;
          return ERRNO_FBIG;
        }
        stdout.push(bytes.slice());
        stdoutBytes += len;
      }
      written += len;
    }
    view.setUint32(nwrittenPtr, written, true);
    return ERRNO_SUCCESS;
  };
  imports.fd_read = (fd, iovs, iovsLen, nreadPtr) => {
    if (fd !== 0) return native.fd_read!(fd, iovs, iovsLen, nreadPtr);
    const view = new DataView(memory!.buffer);
    let read = 0;
    for (let i = 0; i < iovsLen && stdinOffset < job.body.length; i++) {
      const ptr = view.getUint32(iovs + i * 8, true);
      const len = view.getUint32(iovs + i * 8 + 4, true);
      const chunk = job.body.subarray(stdinOffset, stdinOffset + len);
      new Uint8Array(memory!.buffer, ptr, chunk.length).set(chunk);
      stdinOffset += chunk.length;
      read += chunk.length;
    }
    view.setUint32(nreadPtr, read, true);
    return ERRNO_SUCCESS;
  };

  try {
    const instance = new wasmApi.Instance(module, { wasi_snapshot_preview1: imports });
    memory = instance.exports.memory as WasmMemory;
    const exitCode = wasi.start(instance);
    // A fresh ArrayBuffer of its own (not Buffer's shared pool), so it can be transferred.
    const out = new Uint8Array(stdoutBytes);
    let at = 0;
    for (const chunk of stdout) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return { id: job.id, ok: true, exitCode, stdout: out, truncated };
  } catch (err) {
    return { id: job.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

if ("moduleToFollow" in data && data.warmUpModule) {
  // Time a standby has to spare: what the first request would otherwise initialise (WASI,
  // instantiating, the wrapped imports of runJob) is initialised now.
  runJob(new wasmApi.Module(data.warmUpModule), {
    id: 0,
    args: ["warm-up"],
    env: {},
    body: new Uint8Array(0),
    maxOutputBytes: 0,
  });
}

// A worker given its module up front has compiled it by now (an armed host waits for this).
if (compiled !== undefined) port.postMessage({ loaded: true } satisfies ModuleLoaded);

port.on("message", (message: WorkerJob | ModuleSource) => {
  if (compiled === undefined) {
    compiled = moduleOf(message as ModuleSource);
    port.postMessage({ loaded: true } satisfies ModuleLoaded);
    return;
  }
  const result = runJob(compiled, message as WorkerJob);
  port.postMessage(result, result.ok ? [result.stdout.buffer as ArrayBuffer] : []);
});
