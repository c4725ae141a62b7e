/**
 * `--restart-runners` at the supervisor: POST /v1/runners/restart hands every app to a new
 * runner process (runner/succession.ts) while a request loop runs against each app's address,
 * one connection per request. Every runner pid changes, the record names the new one, the old
 * runner and its workload are gone, and no request fails or is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  alive,
  processSpec,
  randomUuid,
  repoRoot,
  SupervisorUnderTest,
  sleep,
  until,
} from "./runtime-plane-support.js";
import { RequestLoop } from "./support/upgrade-stack.js";

interface App {
  uuid: string;
  runtime: string;
  pid: number;
  workloadPid: number;
  loop: RequestLoop;
}

describe("runner restarts: every app handed to a new runner with no failed request", () => {
  const sup = new SupervisorUnderTest(["--warm-spares", "0"]);
  const apps: App[] = [];

  before(async () => {
    await sup.start();
    const specs: [string, Record<string, unknown>][] = [
      ["process", processSpec({ VERSION: "1" })],
      [
        "wasm",
        { runtime: "wasm", artifact_dir: join(repoRoot, "examples", "hello-wasm"), entry: "hello.wasm" },
      ],
    ];
    for (const [runtime, spec] of specs) {
      const uuid = randomUuid();
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, spec);
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const row = (await sup.call("GET", `/v1/apps/${uuid}`)).json as {
        pid: number;
        workload_pid: number;
        bound_addr: string;
      };
      const loop = new RequestLoop(`http://${row.bound_addr}/`);
      apps.push({ uuid, runtime, pid: row.pid, workloadPid: row.workload_pid, loop });
      loop.start();
    }
    await sleep(1_000);
  });

  after(async () => {
    for (const app of apps) await app.loop.stop();
    await sup.cleanup();
  });

  it("restarts each runner: new pids, old runner and workload gone, the app answering throughout", async () => {
    for (const app of apps) app.loop.phase = "restart";
    const t0 = performance.now();
    const res = await sup.call("POST", "/v1/runners/restart");
    const ms = performance.now() - t0;
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const body = res.json as {
      restarted: { uuid: string; pid_before: number; pid: number; workload_pid: number }[];
      skipped: unknown[];
      failed: unknown[];
    };
    assert.deepEqual(body.failed, []);
    assert.deepEqual(body.skipped, []);
    assert.equal(body.restarted.length, apps.length);
    await sleep(1_000);
    for (const app of apps) app.loop.phase = "after";
    console.log(`# restarted ${apps.length} runners in ${(ms / 1000).toFixed(1)} s`);
    for (const app of apps) {
      const restarted = body.restarted.find((r) => r.uuid === app.uuid);
      assert.ok(restarted, app.runtime);
      sup.seenPids.add(restarted.pid);
      assert.equal(restarted.pid_before, app.pid);
      assert.notEqual(restarted.pid, app.pid, `${app.runtime}: a new runner`);
      const row = (await sup.call("GET", `/v1/apps/${app.uuid}`)).json as {
        pid: number;
        workload_pid: number;
        state: string;
      };
      assert.equal(row.state, "running");
      assert.equal(row.pid, restarted.pid, `${app.runtime}: the record names the new runner`);
      assert.notEqual(row.workload_pid, app.workloadPid, `${app.runtime}: a new workload`);
      await until(
        `${app.runtime}: the old runner exits`,
        async () => (alive(app.pid) ? undefined : true),
        60_000,
      );
      await until(
        `${app.runtime}: the old workload stops`,
        async () => (alive(app.workloadPid) ? undefined : true),
        60_000,
      );
      const during = app.loop.stats("restart");
      console.log(
        `# ${app.runtime}: ${during.n} requests during the restart, p50 ${during.p50.toFixed(1)} ms p99 ${during.p99.toFixed(1)} ms; at rest p99 ${app.loop.stats("rest").p99.toFixed(1)} ms`,
      );
      assert.ok(during.n > 0, "the loop ran during the restart");
      assert.deepEqual(app.loop.failures, [], app.runtime);
    }
    // The new runners keep serving once their predecessors are gone.
    await sleep(1_000);
    for (const app of apps) assert.deepEqual(app.loop.failures, [], app.runtime);
  });
});
