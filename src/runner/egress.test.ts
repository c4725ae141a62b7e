import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { TabbifyError } from "../core/errors.js";
import type { Runtime, Workload, WorkloadExit, WorkloadSpec } from "../runtimes/runtime.js";
import { startWorkloadOnPort } from "./egress.js";

/** A runtime that starts nothing: its workloads' drain and cpu-throttle hooks note each call. */
function fakeRuntime(calls: string[]): Runtime {
  return {
    kind: "process",
    available: async () => true,
    validate: async () => {},
    start: async (_spec: WorkloadSpec, port: number): Promise<Workload> => {
      let end: (exit: WorkloadExit) => void = () => {};
      const exited = new Promise<WorkloadExit>((resolve) => {
        end = resolve;
      });
      return {
        pid: 4242,
        upstream: { host: "127.0.0.1", port },
        version: "sha256:fake",
        exited,
        drain: () => calls.push("drain"),
        cpuThrottled: async () => {
          calls.push("cpuThrottled");
          return true;
        },
        stop: async () => end({ code: 0, signal: null }),
      };
    },
  };
}

const spec: WorkloadSpec = { runtime: "process", command: ["true"], egress: { allow: ["example.invalid"] } };

describe("a workload behind its egress proxy", () => {
  it("says the proxy alone enforces it when nft cannot confine its uid, and why", async () => {
    const calls: string[] = [];
    const logged: string[] = [];
    const workload = await startWorkloadOnPort(
      fakeRuntime(calls),
      spec,
      { uid: 4_000_123, gid: 4_000_123, home: "/nonexistent" },
      { log: (line) => logged.push(line), nftBinary: "/bin/false" },
    );
    try {
      assert.equal(workload.egress?.enforced_by, "proxy");
      assert.match(workload.egress?.reason ?? "", /nft could not confine/);
      assert.ok(
        logged.some((l) => l.includes("direct connections are NOT blocked")),
        logged.join("\n"),
      );
    } finally {
      await workload.stop();
    }
  });

  it("says why when the workload has no app uid", async () => {
    const workload = await startWorkloadOnPort(fakeRuntime([]), spec, undefined, { log: () => {} });
    try {
      assert.deepEqual(workload.egress, {
        enforced_by: "proxy",
        reason: "the workload has no app uid: the supervisor is not root",
      });
    } finally {
      await workload.stop();
    }
  });

  it("keeps the workload's drain and cpu-throttle hooks", async () => {
    const calls: string[] = [];
    const workload = await startWorkloadOnPort(fakeRuntime(calls), spec, undefined, { log: () => {} });
    try {
      workload.drain?.();
      assert.equal(await workload.cpuThrottled?.(), true);
      assert.deepEqual(calls, ["drain", "cpuThrottled"]);
    } finally {
      await workload.stop();
    }
  });

  it("refuses to start when the kernel is required and cannot confine the uid, and starts nothing", async () => {
    const calls: string[] = [];
    let started = 0;
    const runtime = fakeRuntime(calls);
    const start = runtime.start.bind(runtime);
    runtime.start = (s, port, user) => {
      started++;
      return start(s, port, user);
    };
    for (const user of [{ uid: 4_000_124, gid: 4_000_124, home: "/nonexistent" }, undefined]) {
      await assert.rejects(
        startWorkloadOnPort(runtime, spec, user, {
          log: () => {},
          nftBinary: "/bin/false",
          requireKernel: true,
        }),
        (err: TabbifyError) => {
          assert.equal(err.code, "EGRESS_UNCONFINED");
          assert.match(err.message, /--egress-kernel on/);
          return true;
        },
      );
    }
    assert.equal(started, 0, "no workload ran unconfined");
  });
});
