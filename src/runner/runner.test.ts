import assert from "node:assert/strict";
import http from "node:http";
import { describe, test } from "node:test";
import { TabbifyError } from "../core/errors.js";
import { silentLogger } from "../core/log.js";
import { freeLoopbackPort } from "../core/net.js";
import { sleep } from "../core/sleep.js";
import { waitHealthy } from "../runtimes/health.js";
import type { Runtime, Workload, WorkloadSpec } from "../runtimes/runtime.js";
import { Runner } from "./runner.js";

/**
 * A runtime whose workloads are in-process HTTP servers: the runner logic (swap, drain, restart)
 * is exercised without depending on a real runtime. `env.VERSION` is echoed; `env.BROKEN=1`
 * answers 500 (never healthy).
 */
class FakeWorkload implements Workload {
  readonly pid = undefined;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private end!: (how: { code: number | null; signal: string | null }) => void;
  constructor(
    private readonly server: http.Server,
    readonly upstream: { host: string; port: number },
    readonly version: string,
  ) {
    this.exited = new Promise((r) => {
      this.end = r;
    });
  }
  crash(): void {
    this.server.closeAllConnections();
    this.server.close();
    this.end({ code: 1, signal: null });
  }
  async stop(): Promise<void> {
    this.server.close();
    this.server.closeAllConnections();
    this.end({ code: 0, signal: null });
  }
}

class FakeRuntime implements Runtime {
  readonly kind = "process" as const;
  readonly started: FakeWorkload[] = [];
  async available() {
    return true;
  }
  async validate(spec: WorkloadSpec) {
    if (spec.runtime !== "process") throw new TabbifyError("SPEC_INVALID", "wrong runtime");
  }
  async start(spec: WorkloadSpec, port: number): Promise<Workload> {
    const version = spec.env?.VERSION ?? "1";
    const broken = spec.env?.BROKEN === "1";
    const server = http.createServer((req, res) => {
      if (broken) return void res.writeHead(500).end();
      const delay = req.url?.startsWith("/slow") ? 300 : 0;
      setTimeout(() => res.end(`v${version}`), delay);
    });
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    const w = new FakeWorkload(server, { host: "127.0.0.1", port }, `v${version}`);
    this.started.push(w);
    return w;
  }
}

const agent = new http.Agent({ keepAlive: true });
function get(port: number, path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

async function makeRunner(env: Record<string, string> = {}) {
  const runtime = new FakeRuntime();
  const port = await freeLoopbackPort();
  const runner = new Runner({
    uuid: "0191e7c2-1111-7222-8333-444455556666",
    appUla: "fd5a:1f02:44a5:240b:121a::1",
    bindHost: "127.0.0.1",
    bindPort: port,
    spec: { runtime: "process", env },
    runtimeFor: () => runtime,
    waitHealthy: async (u, o) => {
      await waitHealthy(u, o);
    },
    logger: silentLogger,
    healthTimeoutMs: 500,
    restartBaseMs: 100,
    restartCapMs: 400,
  });
  return { runner, runtime, port };
}

describe("runner", () => {
  test("serves through the app address; health reports the workload", async () => {
    const { runner, port } = await makeRunner({ VERSION: "1" });
    await runner.start();
    try {
      assert.deepEqual(await get(port), { status: 200, body: "v1" });
      const h = runner.health();
      assert.equal(h.state, "running");
      assert.equal(h.app_health, "serving");
      assert.equal(h.version, "v1");
      assert.equal(h.bound_addr, `127.0.0.1:${port}`);
      assert.equal(h.restarts, 0);
    } finally {
      await runner.stop();
    }
  });

  test("a first workload that never gets healthy makes start throw", async () => {
    const { runner } = await makeRunner({ BROKEN: "1" });
    await assert.rejects(runner.start(), /health/);
    await runner.stop();
  });

  test("swap: in-flight requests finish on the old version, new ones go to the new", async () => {
    const { runner, runtime, port } = await makeRunner({ VERSION: "1" });
    await runner.start();
    try {
      const slow = get(port, "/slow");
      await sleep(50);
      const version = await runner.handle({
        cmd: "deploy",
        spec: { runtime: "process", env: { VERSION: "2" } },
      });
      assert.deepEqual(version, { reply: "ok", version: "v2" });
      assert.deepEqual(await slow, { status: 200, body: "v1" });
      assert.deepEqual(await get(port), { status: 200, body: "v2" });
      assert.equal(runtime.started.length, 2);
      // The old workload was stopped after draining.
      await runtime.started[0]!.exited;
    } finally {
      await runner.stop();
    }
  });

  test("a new version that fails health leaves the old one serving", async () => {
    const { runner, port } = await makeRunner({ VERSION: "1" });
    await runner.start();
    try {
      await assert.rejects(runner.deploy({ runtime: "process", env: { BROKEN: "1" } }), /health/);
      assert.deepEqual(await get(port), { status: 200, body: "v1" });
      assert.equal(runner.health().app_health, "serving");
    } finally {
      await runner.stop();
    }
  });

  test("a crashed workload answers 503 meanwhile and comes back after the backoff", async () => {
    const { runner, runtime, port } = await makeRunner({ VERSION: "1" });
    await runner.start();
    try {
      const crashedAt = Date.now();
      runtime.started[0]!.crash();
      await sleep(20);
      const during = await get(port);
      assert.equal(during.status, 503);
      assert.match(during.body, /exited/);
      assert.equal(runner.health().state, "restarting");
      while (runner.health().app_health !== "serving") await sleep(10);
      assert.ok(Date.now() - crashedAt >= 100, "restarted no sooner than the base delay");
      assert.equal(runner.health().restarts, 1);
      assert.deepEqual(await get(port), { status: 200, body: "v1" });
    } finally {
      await runner.stop();
    }
  });
});
