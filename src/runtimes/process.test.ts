import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { freeLoopbackPort } from "../core/net.js";
import { waitHealthy } from "./health.js";
import { ProcessRuntime } from "./process.js";
import type { WorkloadSpec } from "./runtime.js";
import { httpGet, runtimeSuite } from "./runtime-suite.js";

// dist/src/runtimes → repository root
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const helloNode = join(root, "examples", "hello-node");

const spec = (env: Record<string, string>): WorkloadSpec => ({
  runtime: "process",
  artifactDir: helloNode,
  command: ["node", "server.js"],
  env,
});

runtimeSuite("process", spec, {
  makeRuntime: (options) => new ProcessRuntime(options),
  invalidSpecs: () => [
    {
      name: "missing artifact dir",
      spec: { runtime: "process", artifactDir: "/nonexistent/tabbify", command: ["node", "server.js"] },
      code: "ARTIFACT_NOT_FOUND",
    },
    {
      name: "no command",
      spec: { runtime: "process", artifactDir: helloNode, command: [] },
      code: "SPEC_INVALID",
    },
    {
      name: "command not in the artifact",
      spec: { runtime: "process", artifactDir: helloNode, command: ["./no-such-binary"] },
      code: "ARTIFACT_NOT_FOUND",
    },
    {
      name: "command neither on PATH nor in the artifact",
      spec: { runtime: "process", artifactDir: helloNode, command: ["no-such-command-anywhere"] },
      code: "ARTIFACT_NOT_FOUND",
    },
    {
      name: "unknown field",
      spec: { ...spec({}), cmd: ["node"] } as unknown as WorkloadSpec,
      code: "SPEC_INVALID",
    },
    { name: "field of another runtime", spec: { ...spec({}), image: "busybox" }, code: "SPEC_INVALID" },
    { name: "bad env name", spec: spec({ "NOT-A-NAME": "x" }), code: "SPEC_INVALID" },
  ],
  exitsOnItsOwn: () => ({
    runtime: "process",
    artifactDir: helloNode,
    command: ["node", "-e", "setTimeout(() => process.exit(3), 100)"],
  }),
});

test("process: version is the sha256 of the entry file", async () => {
  const workload = await new ProcessRuntime({ output: "ignore" }).start(spec({}), await freeLoopbackPort());
  try {
    const expected = createHash("sha256")
      .update(await readFile(join(helloNode, "server.js")))
      .digest("hex");
    assert.equal(workload.version, `sha256:${expected}`);
  } finally {
    await workload.stop(2_000);
  }
});

test("process: the workload sees only basic env, spec env, HOST and PORT (not the caller's secrets)", async () => {
  process.env.TABBIFY_TEST_SECRET = "hunter2";
  let out = "";
  const sink = new PassThrough().on("data", (c: Buffer) => {
    out += c.toString();
  });
  try {
    const workload = await new ProcessRuntime({ output: { stdout: sink, stderr: sink } }).start(
      {
        runtime: "process",
        artifactDir: helloNode,
        command: ["node", "-e", "console.log(JSON.stringify(process.env))"],
        env: { GREETING: "hi" },
      },
      45678,
    );
    assert.deepEqual(await workload.exited, { code: 0, signal: null });
    await new Promise((r) => setImmediate(r));
    const env = JSON.parse(out.trim()) as Record<string, string>;
    assert.equal(env.GREETING, "hi");
    assert.equal(env.HOST, "127.0.0.1");
    assert.equal(env.PORT, "45678");
    assert.equal(env.TABBIFY_TEST_SECRET, undefined);
    assert.ok(env.PATH);
  } finally {
    delete process.env.TABBIFY_TEST_SECRET;
  }
});

test("process: an app ignoring SIGTERM is killed after the grace period, with what it forked", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tabbify-process-"));
  try {
    await cp(helloNode, dir, { recursive: true });
    const app = [
      "process.on('SIGTERM', () => console.log('ignoring SIGTERM'));",
      "require('node:child_process').spawn('sleep', ['1000'], { stdio: 'ignore' });",
      "require('node:http').createServer((q, s) => s.end('stubborn')).listen(process.env.PORT, process.env.HOST);",
    ].join("\n");
    const workload = await new ProcessRuntime({ output: "ignore" }).start(
      { runtime: "process", artifactDir: dir, command: ["node", "-e", app], env: {} },
      await freeLoopbackPort(),
    );
    await waitHealthy(workload.upstream, { timeoutMs: 10_000, exited: workload.exited });
    assert.equal((await httpGet("127.0.0.1", workload.upstream.port)).body, "stubborn");
    const t0 = performance.now();
    await workload.stop(300);
    const took = performance.now() - t0;
    assert.deepEqual(await workload.exited, { code: null, signal: "SIGKILL" });
    assert.ok(took >= 250 && took < 5_000, `stop took ${took.toFixed(0)} ms`);
    // The forked `sleep` was in the workload's process group and went with it.
    await assert.rejects(
      (async () => process.kill(-workload.pid!, 0))(),
      (err: NodeJS.ErrnoException) => err.code === "ESRCH",
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Real, effective, saved and filesystem ids of a process, and its supplementary groups. */
function idsOf(pid: number): { uids: number[]; gids: number[]; groups: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8").split("\n");
  const ids = (name: string) =>
    (status.find((l) => l.startsWith(`${name}:`)) ?? "")
      .slice(name.length + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  return { uids: ids("Uid"), gids: ids("Gid"), groups: ids("Groups") };
}

test("process: with a user, the workload runs as that uid and gid, no other group, HOME its directory", async () => {
  assert.equal(process.getuid?.(), 0, "switching a workload's user needs root: run this suite as root");
  const home = await mkdtemp(join(tmpdir(), "tabbify-app-home-"));
  try {
    const user = { uid: 65534, gid: 65534, home };
    const workload = await new ProcessRuntime({ output: "ignore" }).start(
      spec({}),
      await freeLoopbackPort(),
      user,
    );
    try {
      await waitHealthy(workload.upstream, { timeoutMs: 10_000 });
      assert.deepEqual(idsOf(workload.pid!), {
        uids: [65534, 65534, 65534, 65534],
        gids: [65534, 65534, 65534, 65534],
        groups: [],
      });
      const env = readFileSync(`/proc/${workload.pid}/environ`, "utf8").split("\0");
      assert.ok(env.includes(`HOME=${home}`), "HOME is not the app's directory");
    } finally {
      await workload.stop(2_000);
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});
