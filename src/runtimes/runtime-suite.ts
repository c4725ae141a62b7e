/**
 * The one test suite every runtime passes. A runtime's test file supplies a spec for its
 * flavour of the same app: it answers `GET /` with a body containing `v<VERSION>` (env VERSION),
 * serves on HOST:PORT, and on SIGTERM prints a line containing "SIGTERM" and exits 0.
 */

import assert from "node:assert/strict";
import { request } from "node:http";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import { sleep } from "../core/sleep.js";
import type { RuntimeOptions } from "./child.js";
import { waitHealthy } from "./health.js";
import type { Runtime, RuntimeKind, Workload, WorkloadSpec } from "./runtime.js";

export interface RuntimeSuiteOptions {
  /** Runs once before the suite (e.g. start dockerd, build an image). Failing here fails the suite. */
  setup?: () => Promise<void>;
  makeRuntime: (options: RuntimeOptions) => Runtime;
  /** Specs that validate() must refuse, with the error code expected (called once setup has run). */
  invalidSpecs: () => { name: string; spec: WorkloadSpec; code: string }[];
  /** A spec whose workload exits on its own with code 3 shortly after starting, if the runtime can express one. */
  exitsOnItsOwn?: () => WorkloadSpec;
  /** Generous for docker (container start), tight for the others. */
  healthTimeoutMs?: number;
}

export function httpGet(host: string, port: number, path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, timeout: 5_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** Whether anything accepts TCP connections on host:port. */
export function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: "/", agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code !== "ECONNREFUSED"));
    req.end();
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

export function runtimeSuite(
  kind: RuntimeKind,
  makeSpec: (env: Record<string, string>) => WorkloadSpec,
  options: RuntimeSuiteOptions,
): void {
  describe(`runtime ${kind}`, () => {
    let output = "";
    const sink = new PassThrough();
    sink.on("data", (c: Buffer) => {
      output += c.toString();
    });
    let runtime: Runtime;
    const started: Workload[] = [];
    const healthTimeoutMs = options.healthTimeoutMs ?? 10_000;

    const startHealthy = async (version: string) => {
      const port = await freeLoopbackPort();
      const t0 = performance.now();
      const workload = await runtime.start(makeSpec({ VERSION: version }), port);
      started.push(workload);
      await waitHealthy(workload.upstream, { timeoutMs: healthTimeoutMs, exited: workload.exited });
      return { workload, port, coldStartMs: performance.now() - t0 };
    };

    before(async () => {
      await options.setup?.();
      runtime = options.makeRuntime({ output: { stdout: sink, stderr: sink } });
    });

    after(async () => {
      await Promise.all(started.map((w) => w.stop(2_000)));
    });

    test("is available on this host", async () => {
      assert.equal(runtime.kind, kind);
      assert.equal(await runtime.available(), true, `${kind} runtime is not available on this host`);
    });

    test("validate refuses bad specs, and start with one starts nothing", async () => {
      const invalid = options.invalidSpecs();
      assert.ok(invalid.length > 0);
      for (const { name, spec, code } of invalid) {
        await assert.rejects(
          runtime.validate(spec),
          (err) => isTabbifyError(err, code),
          `${name}: expected ${code}`,
        );
        const port = await freeLoopbackPort();
        await assert.rejects(runtime.start(spec, port), (err) => isTabbifyError(err, code), `${name}: start`);
        assert.equal(await listening("127.0.0.1", port), false, `${name}: something listens on ${port}`);
      }
      // A spec for another runtime is refused too.
      const other = { ...makeSpec({}), runtime: kind === "process" ? "wasm" : "process" } as WorkloadSpec;
      await assert.rejects(runtime.validate(other), (err) => isTabbifyError(err, "SPEC_INVALID"));
    });

    test("starts, gets healthy and answers with its env; HOST and PORT are honoured", async (t) => {
      const version = `v${Math.random().toString(36).slice(2, 8)}`;
      const { workload, port, coldStartMs } = await startHealthy(version);
      t.diagnostic(`${kind} cold start (start → first healthy answer): ${coldStartMs.toFixed(0)} ms`);
      const res = await httpGet("127.0.0.1", port);
      assert.equal(res.status, 200);
      assert.match(res.body, new RegExp(`v${version}`));
      assert.deepEqual(workload.upstream, { host: "127.0.0.1", port });
      assert.ok(typeof workload.pid === "number" && workload.pid > 0, "pid is known");
      assert.ok(workload.version, "version is known");
      // Bound to HOST=127.0.0.1 only, not to every address: another loopback address is refused.
      assert.equal(await listening("127.0.0.2", port), false, "workload listens beyond 127.0.0.1");
      await workload.stop(5_000);
    });

    test("a crash of the workload settles exited, and stop() afterwards is harmless", async () => {
      const { workload } = await startHealthy("crash");
      process.kill(workload.pid!, "SIGKILL");
      const exit = await withTimeout(workload.exited, 15_000, "exited after SIGKILL");
      assert.ok(exit.signal === "SIGKILL" || (exit.code !== null && exit.code !== 0), JSON.stringify(exit));
      await withTimeout(workload.stop(1_000), 15_000, "stop after a crash");
    });

    if (options.exitsOnItsOwn) {
      const spec = options.exitsOnItsOwn;
      test("a workload that exits on its own settles exited with its code", async () => {
        const workload = await runtime.start(spec(), await freeLoopbackPort());
        started.push(workload);
        const exit = await withTimeout(workload.exited, 30_000, "exited");
        assert.deepEqual(exit, { code: 3, signal: null });
        await assert.rejects(
          waitHealthy(workload.upstream, { timeoutMs: 2_000, exited: workload.exited }),
          (err) => isTabbifyError(err, "WORKLOAD_UNHEALTHY") && /exited/.test(err.message),
        );
        await workload.stop();
      });
    }

    test("stop() is graceful (the app sees SIGTERM and exits 0) and idempotent", async () => {
      const { workload, port } = await startHealthy("graceful");
      const before = output.length;
      const t0 = performance.now();
      await Promise.all([workload.stop(8_000), workload.stop(8_000)]);
      const took = performance.now() - t0;
      assert.deepEqual(await workload.exited, { code: 0, signal: null });
      assert.ok(took < 7_500, `stop took ${took.toFixed(0)} ms: the app did not exit on SIGTERM`);
      await withTimeout(
        (async () => {
          while (!/SIGTERM/.test(output.slice(before))) await sleep(50);
        })(),
        5_000,
        `the app printing SIGTERM (output: ${JSON.stringify(output.slice(before, before + 500))})`,
      );
      assert.equal(await listening("127.0.0.1", port), false, "port still open after stop");
      await workload.stop(8_000);
    });

    test("two workloads of one app serve on two ports at once (the swap case)", async () => {
      const [a, b] = await Promise.all([startHealthy("old"), startHealthy("new")]);
      assert.notEqual(a.port, b.port);
      const [ra, rb] = await Promise.all([httpGet("127.0.0.1", a.port), httpGet("127.0.0.1", b.port)]);
      assert.match(ra.body, /vold/);
      assert.match(rb.body, /vnew/);
      await a.workload.stop(5_000);
      assert.match((await httpGet("127.0.0.1", b.port)).body, /vnew/, "stopping one left the other serving");
      await b.workload.stop(5_000);
    });
  });
}
