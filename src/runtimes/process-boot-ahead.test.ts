import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { freeLoopbackPort } from "../core/net.js";
import { readProcStatSync } from "../core/proc-stat.js";
import { sleep } from "../core/sleep.js";
import { waitHealthy } from "./health.js";
import { ProcessRuntime } from "./process.js";
import { GATE_ENV, GATE_IMPORT } from "./process-boot-ahead.js";
import type { WorkloadSpec } from "./runtime.js";
import { httpGet } from "./runtime-suite.js";

/**
 * A sleeping Node app's next workload booted ahead to its gate: none of the app's code runs
 * (its marker file is not written, its port does not listen) until the start that takes it, the
 * app then sees neither the gate's variable nor its fd, a start of another spec discards it, and a
 * gate whose runner went away exits without running the app.
 */

/** Writes `loaded-<pid>` when its code runs; answers what it can see of the gate. */
const APP = `
import { writeFileSync, fstatSync } from "node:fs";
import { createServer } from "node:http";
writeFileSync(new URL("./loaded-" + process.pid, import.meta.url), "");
let fd3 = "closed";
try { fstatSync(3); fd3 = "open"; } catch {}
createServer((req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ pid: process.pid, gateEnv: process.env.${GATE_ENV} ?? null, fd3, version: process.env.VERSION ?? "" }));
}).listen(Number(process.env.PORT), process.env.HOST);
process.once("SIGTERM", () => process.exit(0));
`;

function alive(pid: number): boolean {
  const stat = readProcStatSync(pid);
  return stat !== undefined && stat.state !== "Z";
}

async function until<T>(what: string, check: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("process runtime: a Node app booted ahead to its gate", () => {
  let dir: string;
  const runtime = new ProcessRuntime({ output: "ignore" });
  const spec = (env: Record<string, string> = {}): WorkloadSpec => ({
    runtime: "process",
    artifactDir: dir,
    command: ["node", "app.mjs"],
    env,
    appUuid: "0190a3c4-0000-7000-8000-0000000000b1",
  });
  const loaded = () => readdirSync(dir).filter((f) => f.startsWith("loaded-"));
  /** The booted-ahead node: the only child of this process running app.mjs that has not loaded. */
  const gatedPids = () =>
    readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .filter((pid) => readProcStatSync(pid)?.ppid === process.pid && alive(pid))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("app.mjs");
        } catch {
          return false;
        }
      });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tabbify-boot-ahead-"));
    await writeFile(join(dir, "app.mjs"), APP);
  });
  after(async () => {
    await runtime.discardPrewarmed();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs none of the app's code until the start that takes it, which then answers", async () => {
    const woken = spec();
    await runtime.prewarmFor(woken);
    const [pid] = gatedPids();
    assert.ok(pid !== undefined && alive(pid), "a Node process waits at the gate");
    // Long enough for an ungated app to have loaded many times over.
    await sleep(1_000);
    assert.deepEqual(loaded(), [], "the app's code ran before the wake");
    const workload = await runtime.start(woken, await freeLoopbackPort());
    try {
      assert.equal(workload.pid, pid, "the start took the booted-ahead process");
      await waitHealthy(workload.upstream, { timeoutMs: 30_000, exited: workload.exited });
      const answer = JSON.parse(
        (await httpGet(workload.upstream.host, workload.upstream.port)).body,
      ) as Record<string, unknown>;
      assert.equal(answer.pid, pid);
      assert.equal(answer.gateEnv, null, "the app sees the gate's variable");
      assert.equal(answer.fd3, "closed", "the app inherits the gate's fd");
      assert.deepEqual(loaded(), [`loaded-${pid}`]);
      assert.match(String(workload.version), /^sha256:[0-9a-f]{64}$/, "the entry file is hashed");
    } finally {
      await workload.stop(2_000);
    }
  });

  it("a start of another spec discards it and starts that spec", async () => {
    await runtime.prewarmFor(spec({ VERSION: "1" }));
    const [gated] = gatedPids();
    assert.ok(gated !== undefined);
    const workload = await runtime.start(spec({ VERSION: "2" }), await freeLoopbackPort());
    try {
      await waitHealthy(workload.upstream, { timeoutMs: 30_000, exited: workload.exited });
      const answer = JSON.parse(
        (await httpGet(workload.upstream.host, workload.upstream.port)).body,
      ) as Record<string, unknown>;
      assert.equal(answer.version, "2");
      assert.notEqual(workload.pid, gated);
      await until("the discarded process to exit", () => (alive(gated) ? undefined : true));
      assert.ok(!existsSync(join(dir, `loaded-${gated}`)), "the discarded process ran the app");
    } finally {
      await workload.stop(2_000);
    }
  });

  it("discardPrewarmed stops it without running the app", async () => {
    await runtime.prewarmFor(spec());
    const [gated] = gatedPids();
    assert.ok(gated !== undefined);
    await runtime.discardPrewarmed();
    await until("the discarded process to exit", () => (alive(gated) ? undefined : true));
    assert.ok(!existsSync(join(dir, `loaded-${gated}`)));
  });

  it("a gate whose runner went away exits without running the app", async () => {
    const child = spawn(process.execPath, ["--import", GATE_IMPORT, "app.mjs"], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        HOST: "127.0.0.1",
        PORT: String(await freeLoopbackPort()),
        [GATE_ENV]: "3",
      },
      stdio: ["ignore", "ignore", "ignore", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const pipe = child.stdio[3] as Duplex;
    await new Promise((resolve) => pipe.once("data", resolve));
    pipe.destroy();
    assert.equal(await exited, 0);
    assert.ok(!existsSync(join(dir, `loaded-${child.pid}`)), "the app ran without its runner");
  });
});
