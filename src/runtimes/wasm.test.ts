import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import wabtInit from "wabt";
import { freeLoopbackPort } from "../core/net.js";
import { readProcStatSync } from "../core/proc-stat.js";
import { sleep } from "../core/sleep.js";
import { parseCgiResponse } from "./cgi.js";
import { waitHealthy } from "./health.js";
import type { Workload, WorkloadSpec } from "./runtime.js";
import { httpGet, listening, runtimeSuite } from "./runtime-suite.js";
import { WasmRuntime } from "./wasm.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const helloWasm = join(root, "examples", "hello-wasm");

const spec = (env: Record<string, string>): WorkloadSpec => ({
  runtime: "wasm",
  artifactDir: helloWasm,
  entry: "hello.wasm",
  env,
});

/** Fixture modules, assembled from WAT at test time. */
const fixtures: Record<string, string> = {
  // Loops forever: the per-request time limit must end it.
  "spin.wasm": `(module (memory (export "memory") 1 1) (func (export "_start") (loop $l (br $l))))`,
  // No declared maximum: refused.
  "unbounded.wasm": `(module (memory (export "memory") 1) (func (export "_start")))`,
  // 100 pages = 6.25 MiB maximum: above a 1 MiB limit.
  "big.wasm": `(module (memory (export "memory") 1 100) (func (export "_start")))`,
  // Imports something that is not WASI.
  "foreign.wasm": `(module (import "env" "f" (func)) (memory (export "memory") 1 1) (func (export "_start")))`,
  // Echoes stdin (the request body) back with a 201 status.
  "echo.wasm": `(module
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1 1)
    (data (i32.const 100) "Status: 201 Created\\nContent-Type: application/octet-stream\\n\\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 60))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (block $eof (loop $more
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $eof (i32.eqz (i32.load (i32.const 8))))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
        (br $more)))))`,
  // Writes no CGI headers at all.
  "garbage.wasm": `(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1 1)
    (data (i32.const 100) "just text")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 9))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`,
};

let fixtureDir = "";
before(async () => {
  fixtureDir = await mkdtemp(join(tmpdir(), "tabbify-wasm-"));
  const wabt = await wabtInit();
  for (const [name, wat] of Object.entries(fixtures)) {
    const parsed = wabt.parseWat(name, wat);
    parsed.resolveNames();
    parsed.validate();
    await writeFile(join(fixtureDir, name), parsed.toBinary({}).buffer);
    parsed.destroy();
  }
  await writeFile(join(fixtureDir, "not.wasm"), "this is not wasm");
  // A component-model binary starts with the same magic but a different version/layer.
  await writeFile(join(fixtureDir, "component.wasm"), Buffer.from([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]));
});
after(async () => {
  await rm(fixtureDir, { recursive: true, force: true });
});

const fixture = (entry: string, limits?: WorkloadSpec["limits"]): WorkloadSpec => ({
  runtime: "wasm",
  artifactDir: fixtureDir,
  entry,
  ...(limits ? { limits } : {}),
});

runtimeSuite("wasm", spec, {
  invalidSpecs: () => [
    { name: "missing module", spec: { ...spec({}), entry: "missing.wasm" }, code: "ARTIFACT_NOT_FOUND" },
    { name: "no entry", spec: { runtime: "wasm", artifactDir: helloWasm }, code: "SPEC_INVALID" },
    {
      name: "entry outside the artifact",
      spec: { ...spec({}), entry: "../../package.json" },
      code: "SPEC_INVALID",
    },
    { name: "memory without a maximum", spec: fixture("unbounded.wasm"), code: "SPEC_INVALID" },
    {
      name: "memory maximum above the limit",
      spec: fixture("big.wasm", { memoryMb: 1 }),
      code: "SPEC_INVALID",
    },
    { name: "not a wasm module", spec: fixture("not.wasm"), code: "SPEC_INVALID" },
    { name: "a component, not a core module", spec: fixture("component.wasm"), code: "SPEC_INVALID" },
    { name: "non-WASI import", spec: fixture("foreign.wasm"), code: "SPEC_INVALID" },
    { name: "a field of another runtime", spec: { ...spec({}), command: ["x"] }, code: "SPEC_INVALID" },
  ],
  makeRuntime: (options) => new WasmRuntime(options),
});

async function started(s: WorkloadSpec): Promise<Workload> {
  const workload = await new WasmRuntime({ output: "ignore", workers: 1 }).start(s, await freeLoopbackPort());
  // Some fixtures never answer below 500, so wait for the listener rather than for health.
  const deadline = Date.now() + 10_000;
  while (!(await listening("127.0.0.1", workload.upstream.port))) {
    if (Date.now() > deadline) throw new Error("wasm host did not listen within 10 s");
    await sleep(20);
  }
  return workload;
}

test("wasm: the request reaches the module as CGI env and stdin; its Status header is honoured", async () => {
  const workload = await started(fixture("echo.wasm"));
  try {
    const body = "x".repeat(10_000);
    const res = await fetch(`http://127.0.0.1:${workload.upstream.port}/echo`, { method: "POST", body });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.equal(await res.text(), body);
  } finally {
    await workload.stop(2_000);
  }
});

test("wasm: hello echoes method and path", async () => {
  const workload = await started(spec({}));
  try {
    const res = await fetch(`http://127.0.0.1:${workload.upstream.port}/some/where?q=1`, {
      method: "DELETE",
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from hello-wasm v1\nmethod: DELETE\npath: /some/where\n");
  } finally {
    await workload.stop(2_000);
  }
});

test("wasm: a request past the time limit gets 504, its worker is replaced, the next request is served", async () => {
  const workload = await started(fixture("spin.wasm", { timeoutMs: 300 }));
  try {
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const res = await httpGet("127.0.0.1", workload.upstream.port, "/spin");
      const took = performance.now() - t0;
      assert.equal(res.status, 504);
      assert.match(res.body, /fuel budget \(reason fuel\): 300 ms/);
      assert.ok(took >= 290 && took < 3_000, `request ${i} took ${took.toFixed(0)} ms`);
    }
  } finally {
    await workload.stop(2_000);
  }
});

test("wasm: a module that writes no CGI headers yields 502, the host keeps serving", async () => {
  const workload = await started(fixture("garbage.wasm"));
  try {
    for (let i = 0; i < 2; i++) {
      const res = await httpGet("127.0.0.1", workload.upstream.port);
      assert.equal(res.status, 502);
      assert.match(res.body, /did not write a CGI response/);
    }
  } finally {
    await workload.stop(2_000);
  }
});

test("wasm: version is the module's sha256", async () => {
  const workload = await new WasmRuntime({ output: "ignore" }).start(spec({}), await freeLoopbackPort());
  try {
    const { createHash } = await import("node:crypto");
    const hex = createHash("sha256")
      .update(await readFile(join(helloWasm, "hello.wasm")))
      .digest("hex");
    assert.equal(workload.version, `sha256:${hex}`);
  } finally {
    await workload.stop(2_000);
  }
});

test("parseCgiResponse: headers, Status, Location redirect, and refusals", () => {
  const ok = parseCgiResponse(Buffer.from("Content-Type: text/plain\r\nStatus: 404 Not Found\r\n\r\nnope"));
  assert.deepEqual(ok && { status: ok.status, headers: ok.headers, body: ok.body.toString() }, {
    status: 404,
    headers: [["Content-Type", "text/plain"]],
    body: "nope",
  });
  assert.equal(parseCgiResponse(Buffer.from("Location: /elsewhere\n\n"))?.status, 302);
  assert.equal(parseCgiResponse(Buffer.from("no blank line")), undefined);
  assert.equal(parseCgiResponse(Buffer.from("Status: 99\n\n")), undefined);
  assert.equal(parseCgiResponse(Buffer.from("Bad Header Name: x\n\n")), undefined);
});

/** The standby hosts this test process has running: children whose argv says `wasm-host.js --standby`. */
function standbyPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = readProcStatSync(entry)?.ppid;
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (ppid === process.pid && argv.some((a) => a.endsWith("wasm-host.js")) && argv.includes("--standby"))
        pids.push(Number(entry));
    } catch {
      // Gone between listing and reading.
    }
  }
  return pids;
}

/** What `ps` shows for an armed host (wasm-host.ts; importing that would run a host). */
const ARMED_TITLE = "tabbify wasm-host (armed; waiting for its wake)";

/** The one host this test process has armed for a sleeping app (its title says so). */
function oneArmedPid(): number {
  const pids = readdirSync("/proc").filter((entry) => {
    if (!/^\d+$/.test(entry)) return false;
    try {
      const title = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0+/g, " ").trim();
      return readProcStatSync(entry)?.ppid === process.pid && title === ARMED_TITLE;
    } catch {
      return false;
    }
  });
  assert.equal(pids.length, 1, `expected one armed host, found ${JSON.stringify(pids)}`);
  return Number(pids[0]);
}

function oneStandbyPid(): number {
  const pids = standbyPids();
  assert.equal(pids.length, 1, `expected one standby host, found ${JSON.stringify(pids)}`);
  return pids[0]!;
}

/** Whether the process exists at all (a zombie counts: it has not been reaped). */
const processExists = (pid: number) => existsSync(`/proc/${pid}`);

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Starts `s`, waits for its first answer, and checks it is a 200 naming `version`. */
async function startServing(runtime: WasmRuntime, s: WorkloadSpec, version: string): Promise<Workload> {
  const workload = await runtime.start(s, await freeLoopbackPort());
  try {
    await waitHealthy(workload.upstream, { timeoutMs: 10_000, exited: workload.exited });
    const res = await httpGet("127.0.0.1", workload.upstream.port);
    assert.equal(res.status, 200);
    assert.match(res.body, new RegExp(`hello from hello-wasm v${version}\n`));
    return workload;
  } catch (err) {
    await workload.stop(2_000);
    throw err;
  }
}

test("wasm prewarm: start hands the app to the standby host, which serves it; the next start boots a fresh host", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  await runtime.prewarm();
  const standbyPid = oneStandbyPid();
  try {
    const prewarmed = await startServing(runtime, spec({ VERSION: "warm" }), "warm");
    try {
      assert.equal(prewarmed.pid, standbyPid);
      // Used once only: the next start boots its own host and the standby is not prewarmed again.
      const fresh = await startServing(runtime, spec({ VERSION: "fresh" }), "fresh");
      assert.notEqual(fresh.pid, standbyPid);
      // Serving, the former standby is titled so: `ps` no longer shows it as `--standby`.
      assert.deepEqual(standbyPids(), []);
      const title = readFileSync(`/proc/${standbyPid}/cmdline`, "utf8").replace(/\0+/g, " ").trim();
      assert.equal(title, "tabbify wasm-host (serving; booted as a standby)");
      assert.ok(prewarmed.version?.startsWith("sha256:"));
      assert.equal(prewarmed.version, fresh.version);
      await fresh.stop(2_000);
    } finally {
      await prewarmed.stop(2_000);
    }
    // Serving a config from stdin, the standby stops like any host: SIGTERM, drain, exit 0.
    assert.deepEqual(await prewarmed.exited, { code: 0, signal: null });
    assert.equal(processExists(standbyPid), false);
  } finally {
    await runtime.discardPrewarmed();
  }
});

test("wasm prewarm: a spec with another memory limit boots a fresh host, and the standby is stopped", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  await runtime.prewarm();
  const standbyPid = oneStandbyPid();
  try {
    const workload = await startServing(
      runtime,
      { ...spec({ VERSION: "small" }), limits: { memoryMb: 32 } },
      "small",
    );
    try {
      assert.notEqual(workload.pid, standbyPid);
      assert.equal(processExists(standbyPid), false, "the incompatible standby is still running");
      assert.deepEqual(standbyPids(), []);
    } finally {
      await workload.stop(2_000);
    }
  } finally {
    await runtime.discardPrewarmed();
  }
});

test("wasm prewarm: discardPrewarmed stops the standby, leaves no process, and is idempotent", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  await runtime.discardPrewarmed();
  await runtime.prewarm();
  await runtime.prewarm();
  const standbyPid = oneStandbyPid();
  await Promise.all([runtime.discardPrewarmed(), runtime.discardPrewarmed()]);
  assert.equal(processExists(standbyPid), false, `standby ${standbyPid} still exists`);
  assert.deepEqual(standbyPids(), []);
  await runtime.discardPrewarmed();
  // Discarded means forgotten: the next start boots a fresh host.
  const workload = await startServing(runtime, spec({ VERSION: "after" }), "after");
  assert.notEqual(workload.pid, standbyPid);
  await workload.stop(2_000);
});

test("wasm prewarm: a standby that dies before start is forgotten, and start boots a fresh host", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  await runtime.prewarm();
  const standbyPid = oneStandbyPid();
  try {
    process.kill(standbyPid, "SIGKILL");
    // Gone from /proc means reaped, and the runtime hears of the exit as it is reaped.
    await until(() => !processExists(standbyPid), "the standby's exit");
    const workload = await startServing(runtime, spec({ VERSION: "after-crash" }), "after-crash");
    assert.notEqual(workload.pid, standbyPid);
    await workload.stop(2_000);
  } finally {
    await runtime.discardPrewarmed();
  }
});

/** The TCP ports `pid` listens on: its socket inodes matched against the LISTEN rows of /proc/net/tcp. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // Closed between listing and reading.
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = row.trim().split(/\s+/);
      // st 0A is LISTEN; column 9 is the inode.
      if (cols[3] === "0A" && inodes.has(cols[9] ?? ""))
        ports.push(Number.parseInt(cols[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

test("wasm prewarmFor: the host is armed with the app's module, listens on nothing, runs as the app's user; the wake's start takes it serving", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  const user = { uid: 65534, gid: 65534, home: "/nonexistent" };
  const armedSpec = spec({ VERSION: "armed" });
  await runtime.prewarmFor(armedSpec, user);
  try {
    const armedPid = oneArmedPid();
    assert.deepEqual(listeningPorts(armedPid), [], "an armed host serves nothing before its wake");
    const uid = readFileSync(`/proc/${armedPid}/status`, "utf8").match(/^Uid:\s+(\d+)/m)?.[1];
    assert.equal(uid, "65534", "armed, the host has switched to the app's user");
    const port = await freeLoopbackPort();
    const workload = await runtime.start(armedSpec, port, user);
    try {
      assert.equal(workload.pid, armedPid);
      assert.deepEqual(listeningPorts(armedPid), [workload.upstream.port], "start returns once it listens");
      // No health poll first: start returned once the host listened.
      const res = await httpGet("127.0.0.1", workload.upstream.port);
      assert.equal(res.status, 200);
      assert.match(res.body, /hello from hello-wasm varmed\n/);
      assert.ok(workload.version?.startsWith("sha256:"));
    } finally {
      await workload.stop(2_000);
    }
    assert.deepEqual(await workload.exited, { code: 0, signal: null });
  } finally {
    await runtime.discardPrewarmed();
  }
});

test("wasm prewarmFor: a start with another spec stops the armed host and starts afresh; discardPrewarmed stops an armed host", async () => {
  const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
  await runtime.prewarmFor(spec({ VERSION: "old" }));
  try {
    const armedPid = oneArmedPid();
    // As when a deploy comes while the app sleeps: the wake's spec is another one.
    const workload = await startServing(runtime, spec({ VERSION: "new" }), "new");
    try {
      assert.notEqual(workload.pid, armedPid);
      assert.equal(processExists(armedPid), false, "the host armed for the old spec is still running");
    } finally {
      await workload.stop(2_000);
    }
    await runtime.prewarmFor(spec({ VERSION: "discarded" }));
    await runtime.prewarmFor(spec({ VERSION: "twice" }));
    const second = oneArmedPid();
    await Promise.all([runtime.discardPrewarmed(), runtime.discardPrewarmed()]);
    assert.equal(processExists(second), false, `armed host ${second} still exists`);
    assert.deepEqual(standbyPids(), []);
  } finally {
    await runtime.discardPrewarmed();
  }
});

for (const prewarmed of [true, false]) {
  test(`wasm${prewarmed ? " prewarm" : ""}: the app's env reaches the module through stdin, never the host's cmdline or environ`, async () => {
    const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
    if (prewarmed) await runtime.prewarm();
    const secret = `s3cret${Math.random().toString(36).slice(2, 10)}`;
    const token = `tok${Math.random().toString(36).slice(2, 10)}`;
    const standbyPid = prewarmed ? oneStandbyPid() : undefined;
    try {
      const workload = await startServing(runtime, spec({ VERSION: secret, API_TOKEN: token }), secret);
      try {
        if (prewarmed) assert.equal(workload.pid, standbyPid, "the standby did not serve");
        for (const file of ["cmdline", "environ"]) {
          const text: string = readFileSync(`/proc/${workload.pid}/${file}`, "utf8");
          assert.equal(text.includes(secret) || text.includes(token), false, `an env value is in ${file}`);
          assert.equal(/VERSION|API_TOKEN/.test(text), false, `an env name is in ${file}`);
        }
      } finally {
        await workload.stop(2_000);
      }
    } finally {
      await runtime.discardPrewarmed();
    }
  });
}

test("wasm standby host: exits on its own when its stdin closes without a config", async () => {
  const hostScript = fileURLToPath(new URL("./wasm-host.js", import.meta.url));
  const standby = spawn(
    process.execPath,
    ["--disable-warning=ExperimentalWarning", hostScript, "--standby"],
    {
      stdio: ["pipe", "ignore", "pipe"],
    },
  );
  let stderr = "";
  standby.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    standby.once("exit", (code, signal) => resolve({ code, signal })),
  );
  try {
    // As when the runner that prewarmed it dies while the standby waits, booted.
    await sleep(300);
    standby.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      exited,
      new Promise<"still running">((resolve) => {
        timer = setTimeout(() => resolve("still running"), 10_000);
      }),
    ]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);
    assert.match(stderr, /stdin closed without a config/);
  } finally {
    standby.kill("SIGKILL");
  }
});

test("wasm prewarm: start → first 200, cold vs prewarmed (measured, not asserted)", async (t) => {
  // The runner's own settings: default pool size, health polled through waitHealthy.
  const runtime = new WasmRuntime({ output: "ignore" });
  const firstOk = async (prewarmed: boolean, run: number) => {
    if (prewarmed) {
      await runtime.prewarm();
      // A spare waits for its app far longer than the standby takes to boot.
      await sleep(1_000);
    }
    const t0 = performance.now();
    const workload = await runtime.start(spec({ VERSION: `run${run}` }), await freeLoopbackPort());
    try {
      const healthy = await waitHealthy(workload.upstream, { timeoutMs: 10_000, exited: workload.exited });
      const ms = performance.now() - t0;
      assert.equal(healthy.status, 200);
      return ms;
    } finally {
      await workload.stop(2_000);
    }
  };
  const cold: number[] = [];
  const prewarmed: number[] = [];
  const armed: number[] = [];
  try {
    for (let run = 0; run < 5; run++) {
      cold.push(await firstOk(false, run));
      prewarmed.push(await firstOk(true, run));
      // A sleeping app's wake: its host armed with the module, the start's spec the same object.
      const sleeping = spec({ VERSION: `armed${run}` });
      await runtime.prewarmFor(sleeping);
      await sleep(1_000);
      const t0 = performance.now();
      const workload = await runtime.start(sleeping, await freeLoopbackPort());
      try {
        assert.equal((await httpGet("127.0.0.1", workload.upstream.port)).status, 200);
        armed.push(performance.now() - t0);
      } finally {
        await workload.stop(2_000);
      }
    }
  } finally {
    await runtime.discardPrewarmed();
  }
  const median = (ms: number[]) => [...ms].sort((a, b) => a - b)[ms.length >> 1]!.toFixed(0);
  const all = (ms: number[]) => ms.map((m) => m.toFixed(0)).join(", ");
  t.diagnostic(`wasm cold start → first 200: median ${median(cold)} ms (${all(cold)})`);
  t.diagnostic(`wasm prewarmed start → first 200: median ${median(prewarmed)} ms (${all(prewarmed)})`);
  t.diagnostic(`wasm armed wake (prewarmFor) → first 200: median ${median(armed)} ms (${all(armed)})`);
});

test("wasm: with a user, a cold host and a prewarmed standby both switch to it before serving", async () => {
  assert.equal(process.getuid?.(), 0, "switching a workload's user needs root: run this suite as root");
  const user = { uid: 65534, gid: 65534, home: "/nonexistent" };
  const uidsOf = (pid: number) =>
    (
      readFileSync(`/proc/${pid}/status`, "utf8")
        .split("\n")
        .find((l) => l.startsWith("Uid:")) ?? ""
    )
      .split(/\s+/)
      .slice(1)
      .map(Number);
  for (const prewarmed of [false, true]) {
    const runtime = new WasmRuntime({ output: "ignore", workers: 1 });
    if (prewarmed) await runtime.prewarm();
    const workload = await runtime.start(spec({}), await freeLoopbackPort(), user);
    try {
      await waitHealthy(workload.upstream, { timeoutMs: 15_000 });
      assert.equal((await httpGet(workload.upstream.host, workload.upstream.port, "/")).status, 200);
      assert.deepEqual(uidsOf(workload.pid!), [65534, 65534, 65534, 65534], `prewarmed: ${prewarmed}`);
    } finally {
      await workload.stop(2_000);
    }
  }
});
