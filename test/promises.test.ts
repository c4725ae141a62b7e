/**
 * What the manifests promise, end to end with a real supervisor and runners: `on_request` apps
 * scale to zero and wake on the first request, stateful apps keep their data across swaps,
 * restarts and a supervisor kill -9 (only purge removes it, a deploy that would drop it is
 * refused with 409), and memory_mb / vcpus hold a process app with the reason reported.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import wabtInit from "wabt";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";
import {
  alive,
  fastSupervisorArgs,
  httpGet,
  randomUuid,
  repoRoot,
  SupervisorUnderTest,
  until,
} from "./runtime-plane-support.js";
import { buildScratchImage, requireCommand } from "./support/tools.js";

const promisesApp = join(repoRoot, "test", "fixtures", "promises-app");
const supervisors: SupervisorUnderTest[] = [];
async function startSupervisor(extraArgs: string[] = []): Promise<SupervisorUnderTest> {
  const s = new SupervisorUnderTest([...fastSupervisorArgs(10_000), ...extraArgs]);
  supervisors.push(s);
  await s.start();
  return s;
}
after(async () => {
  for (const s of supervisors) await s.cleanup();
});

function appSpec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { runtime: "process", artifact_dir: promisesApp, command: ["node", "server.mjs"], ...extra };
}

/** A process's command line, or "" once it is gone. */
function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

async function row(sup: SupervisorUnderTest, uuid: string): Promise<Record<string, unknown>> {
  return (await sup.call("GET", `/v1/apps/${uuid}`)).json;
}

describe("manifest promises", () => {
  test("on_request: idle after idle_timeout_sec, woken by a request that gets its 200, again and again", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const started = await sup.call(
      "POST",
      `/v1/apps/${uuid}/start`,
      appSpec({ lifecycle: { mode: "on_request", idle_timeout_sec: 1 } }),
    );
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    for (let round = 0; round < 2; round++) {
      const before = await httpGet(addr, "/");
      assert.equal(before.status, 200, before.body);
      const pid = JSON.parse(before.body).pid as number;
      const idle = await until("the app goes idle", async () => {
        const r = await row(sup, uuid);
        return r.state === "idle" ? r : undefined;
      });
      assert.equal(idle.workload_pid, null, "no workload while idle");
      assert.equal(idle.app_health, "serving", "an idle app still takes requests");
      await until("the idle workload has exited", async () => (alive(pid) ? undefined : true));
      const wokeAt = Date.now();
      const woken = await httpGet(addr, "/", 30_000);
      assert.equal(woken.status, 200, `the waking request must not fail: ${woken.body}`);
      console.log(`wake ${round + 1}: first request after idle answered in ${Date.now() - wokeAt} ms`);
      assert.notEqual(JSON.parse(woken.body).pid, pid, "a fresh workload served it");
      assert.equal((await row(sup, uuid)).state, "running");
    }
  });

  test("on_request with egress: the wake takes the workload booted ahead behind its proxy, its uid still confined", async () => {
    // Required here (root with nft): a start the kernel could not confine would fail.
    const sup = await startSupervisor(["--egress-kernel", "on"]);
    const denied = net.createServer((socket) => socket.destroy());
    await new Promise<void>((r) => denied.listen(0, "127.0.0.1", r));
    const deniedPort = (denied.address() as net.AddressInfo).port;
    try {
      const uuid = randomUuid();
      const started = await sup.call(
        "POST",
        `/v1/apps/${uuid}/start`,
        appSpec({
          lifecycle: { mode: "on_request", idle_timeout_sec: 1 },
          egress: { allow: ["example.invalid"] },
        }),
      );
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const addr = started.json.bound_addr as string;
      const first = JSON.parse((await httpGet(addr, "/")).body) as { pid: number; proxy: string | null };
      assert.match(String(first.proxy), /^http:\/\/127\.0\.0\.1:\d+/, "the workload runs behind its proxy");
      assert.equal((await row(sup, uuid)).egress, "proxy+kernel", "the app row says the kernel confines it");
      const idle = await until("the app goes idle", async () => {
        const r = await row(sup, uuid);
        return r.state === "idle" ? r : undefined;
      });
      // Its next workload waits at its gate, a child of the runner, none of its code run yet.
      const runnerPid = idle.pid as number;
      const gated = await until("a workload booted ahead", async () =>
        readdirSync("/proc")
          .filter((n) => /^\d+$/.test(n))
          .map(Number)
          .find(
            (pid) =>
              pid !== first.pid &&
              readProcStatSync(pid)?.ppid === runnerPid &&
              cmdlineOf(pid).includes("server.mjs"),
          ),
      );
      const wokeAt = Date.now();
      const woken = await httpGet(addr, "/", 30_000);
      assert.equal(woken.status, 200, woken.body);
      console.log(`egress wake: first request after idle answered in ${Date.now() - wokeAt} ms`);
      const body = JSON.parse(woken.body) as { pid: number; proxy: string | null };
      assert.equal(body.pid, gated, "the wake took the workload booted ahead");
      assert.match(String(body.proxy), /^http:\/\/127\.0\.0\.1:\d+/);
      // The kernel still refuses its connections anywhere but its proxy (root + nft here).
      const dial = JSON.parse((await httpGet(addr, `/dial?port=${deniedPort}`)).body) as { dial: string };
      assert.equal(dial.dial, "failed:ECONNREFUSED");
      assert.equal((await row(sup, uuid)).egress, "proxy+kernel");
    } finally {
      denied.close();
    }
  });

  test("an nft that refuses changes: --egress-kernel on fails the egress app's start, auto runs it and says proxy", async () => {
    // An nft that lists but refuses every change, ahead of the real one on the supervisor's PATH.
    const bin = mkdtempSync(join(tmpdir(), "tbf-nft-"));
    const realNft = requireCommand("nft", "nftables");
    writeFileSync(
      join(bin, "nft"),
      `#!/bin/sh\ncase "$1" in -f) echo "Error: refused by the test" >&2; exit 1;; esac\nexec ${realNft} "$@"\n`,
      { mode: 0o755 },
    );
    const env = { PATH: `${bin}:${process.env.PATH}` };
    try {
      const strict = new SupervisorUnderTest(
        [...fastSupervisorArgs(10_000), "--kernel-hop", "off", "--egress-kernel", "on"],
        "local",
        env,
      );
      try {
        await strict.start();
        const refused = await strict.call(
          "POST",
          `/v1/apps/${randomUuid()}/start`,
          appSpec({ egress: { allow: ["example.invalid"] } }),
        );
        assert.notEqual(refused.status, 200, JSON.stringify(refused.json));
        assert.match(
          String(refused.json.runner_log_tail),
          /egress kernel enforcement is required \(--egress-kernel on\), but nft could not confine the app's uid: .*refused by the test/,
        );
      } finally {
        // At once: the refused app would otherwise be retried every second beside the next tests.
        await strict.cleanup();
      }

      const lenient = new SupervisorUnderTest(
        [...fastSupervisorArgs(10_000), "--kernel-hop", "off"],
        "local",
        env,
      );
      supervisors.push(lenient);
      await lenient.start();
      const uuid = randomUuid();
      const started = await lenient.call(
        "POST",
        `/v1/apps/${uuid}/start`,
        appSpec({ egress: { allow: ["example.invalid"] } }),
      );
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const r = await row(lenient, uuid);
      assert.equal(r.egress, "proxy");
      assert.match(String(r.egress_reason), /nft could not confine the app's uid: .*refused by the test/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  test("on_request wasm: idle with its host armed (listed idle, no workload), woken by a request that gets its 200, again", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "wasm",
      artifact_dir: join(repoRoot, "examples", "hello-wasm"),
      entry: "hello.wasm",
      env: { VERSION: "asleep" },
      lifecycle: { mode: "on_request", idle_timeout_sec: 1 },
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    let pid = started.json.workload_pid as number;
    for (let round = 0; round < 2; round++) {
      const idle = await until("the wasm app goes idle", async () => {
        const r = await row(sup, uuid);
        return r.state === "idle" ? r : undefined;
      });
      assert.equal(idle.workload_pid, null, "no workload while idle");
      const listed = (await sup.call("GET", "/v1/apps")).json.apps as Record<string, unknown>[];
      assert.equal(listed.find((a) => a.uuid === uuid)?.state, "idle", "the app list says idle too");
      await until("the idle host has exited", async () => (alive(pid) ? undefined : true));
      const wokeAt = Date.now();
      const woken = await httpGet(addr, "/", 30_000);
      assert.equal(woken.status, 200, `the waking request must not fail: ${woken.body}`);
      assert.match(woken.body, /hello from hello-wasm vasleep/);
      console.log(`wasm wake ${round + 1}: first request after idle answered in ${Date.now() - wokeAt} ms`);
      const running = await row(sup, uuid);
      assert.equal(running.state, "running");
      assert.notEqual(running.workload_pid, pid, "a fresh host served it");
      pid = running.workload_pid as number;
    }
  });

  test("always_on apps never go idle", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const started = await sup.call(
      "POST",
      `/v1/apps/${uuid}/start`,
      appSpec({ lifecycle: { mode: "always_on", idle_timeout_sec: 1 } }),
    );
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const pid = started.json.workload_pid as number;
    // Three idle timeouts and more: an always_on app keeps its workload.
    await sleep(3_500);
    const r = await row(sup, uuid);
    assert.equal(r.state, "running");
    assert.equal(r.workload_pid, pid);
  });

  test("stateful: data survives a swap, a restart and a supervisor kill -9; dropping it is 409; purge removes it", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const dataDir = join(sup.dataDir, "app-data", uuid);
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, appSpec({ stateful: true }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    const info = JSON.parse((await httpGet(addr, "/")).body);
    assert.equal(info.data_dir, dataDir, "TABBIFY_DATA_DIR names the app's directory");
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal((await httpGet(addr, "/write?v=kept")).status, 200);

    const swapped = await sup.call(
      "POST",
      `/v1/apps/${uuid}/deploy`,
      appSpec({ stateful: true, env: { VERSION: "2" } }),
    );
    assert.equal(swapped.status, 200, JSON.stringify(swapped.json));
    let read = JSON.parse((await httpGet(addr, "/read")).body);
    assert.deepEqual([read.version, read.note], ["2", "kept"], "the note survived the swap");

    await sup.call("POST", `/v1/apps/${uuid}/stop`);
    const restarted = await sup.call("POST", `/v1/apps/${uuid}/start`);
    assert.equal(restarted.status, 200, JSON.stringify(restarted.json));
    read = JSON.parse((await httpGet(addr, "/read")).body);
    assert.equal(read.note, "kept", "the note survived a stop and start");

    await sup.kill9();
    await sup.start();
    await sup.call("POST", `/v1/apps/${uuid}/reset`);
    read = JSON.parse((await httpGet(addr, "/read")).body);
    assert.equal(read.note, "kept", "the note survived the supervisor's kill -9 and re-adoption");

    const off = await sup.call("POST", `/v1/apps/${uuid}/deploy`, appSpec({ env: { VERSION: "3" } }));
    assert.equal(off.status, 409, JSON.stringify(off.json));
    assert.equal(off.json.user_fault, true);
    assert.equal(off.json.previous_data_mount, "/data");
    assert.equal(off.json.code, "DATA_MOUNT_CONFLICT");
    const moved = await sup.call(
      "POST",
      `/v1/apps/${uuid}/deploy`,
      appSpec({ stateful: true, data_mount: "/elsewhere" }),
    );
    assert.equal(moved.status, 409, JSON.stringify(moved.json));
    read = JSON.parse((await httpGet(addr, "/read")).body);
    assert.deepEqual([read.version, read.note], ["2", "kept"], "a refused deploy changed nothing");

    const purged = await sup.call("POST", `/v1/apps/${uuid}/purge`);
    assert.equal(purged.status, 200);
    assert.ok(!existsSync(dataDir), "purge removes the data");
  });

  test("wasm stateful: the data dir is the module's first preopen (TABBIFY_DATA_DIR), kept across a swap and a restart, gone after purge", async () => {
    const sup = await startSupervisor();
    const moduleDir = await mkdtemp(join(tmpdir(), "tabbify-stateful-wasm-"));
    try {
      const wabt = await wabtInit();
      const parsed = wabt.parseWat(
        "note.wat",
        readFileSync(join(repoRoot, "test", "fixtures", "stateful-wasm", "note.wat"), "utf8"),
      );
      parsed.resolveNames();
      parsed.validate();
      await writeFile(join(moduleDir, "note.wasm"), parsed.toBinary({}).buffer);
      parsed.destroy();
      const uuid = randomUuid();
      const dataDir = join(sup.dataDir, "app-data", uuid);
      const body = (version: string) => ({
        runtime: "wasm",
        artifact_dir: moduleDir,
        entry: "note.wasm",
        stateful: true,
        env: { VERSION: version },
      });
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, body("1"));
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const addr = started.json.bound_addr as string;
      const notes = async () => (await httpGet(addr, "/")).body;
      // The start's own health check was the first request; each request adds one x.
      const first = await notes();
      assert.match(first, /^x+$/, first);
      assert.equal(
        readFileSync(join(dataDir, "note"), "utf8"),
        first,
        "the module wrote into the app's data dir",
      );
      const swapped = await sup.call("POST", `/v1/apps/${uuid}/deploy`, body("2"));
      assert.equal(swapped.status, 200, JSON.stringify(swapped.json));
      const afterSwap = await notes();
      assert.ok(afterSwap.startsWith(`${first}x`), `the note survived the swap: ${first} then ${afterSwap}`);
      await sup.call("POST", `/v1/apps/${uuid}/stop`);
      assert.equal((await sup.call("POST", `/v1/apps/${uuid}/start`)).status, 200);
      const afterRestart = await notes();
      assert.ok(
        afterRestart.startsWith(`${afterSwap}x`),
        `the note survived a stop and start: ${afterRestart}`,
      );
      assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
      assert.ok(!existsSync(dataDir), "purge removes the data");
    } finally {
      await rm(moduleDir, { recursive: true, force: true });
    }
  });

  test("docker stateful: the data dir is mounted at data_mount, writable by the container's user, kept across a swap", async () => {
    const sup = await startSupervisor();
    const image = "tabbify-test/promises-stateful:v1";
    await buildScratchImage(image, {
      command: ["sh", "/start.sh"],
      files: {
        "/start.sh": `/bin/busybox mkdir -p /tmp/www
echo "boot v\${VERSION:-1} at $TABBIFY_DATA_DIR" >> "$TABBIFY_DATA_DIR/boots"
/bin/busybox cat "$TABBIFY_DATA_DIR/boots" > /tmp/www/index.html
/bin/busybox httpd -f -p "$HOST:$PORT" -h /tmp/www &
pid=$!
trap 'kill $pid; wait $pid; exit 0' TERM
wait $pid
`,
      },
    });
    const uuid = randomUuid();
    sup.dockerApps.add(uuid);
    const body = (version: string) => ({
      runtime: "docker",
      image,
      stateful: true,
      data_mount: "/state",
      limits: { memory_mb: 64, vcpus: 1 },
      env: { VERSION: version },
    });
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, body("1"));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    assert.equal((await httpGet(addr, "/")).body, "boot v1 at /state\n");
    const swapped = await sup.call("POST", `/v1/apps/${uuid}/deploy`, body("2"));
    assert.equal(swapped.status, 200, JSON.stringify(swapped.json));
    assert.equal((await httpGet(addr, "/")).body, "boot v1 at /state\nboot v2 at /state\n");
    assert.equal(statSync(join(sup.dataDir, "app-data", uuid)).mode & 0o777, 0o700);
  });

  test("memory_mb: a process app over its limit is killed (reason oom) and restarted", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const started = await sup.call(
      "POST",
      `/v1/apps/${uuid}/start`,
      appSpec({ limits: { memory_mb: 96, vcpus: 1 } }),
    );
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    const pid = started.json.workload_pid as number;
    const cgroups = readFileSync(`/proc/${pid}/cgroup`, "utf8");
    assert.match(cgroups, new RegExp(`tabbify-${uuid}-\\d+`), "the workload sits in a cgroup of its own");
    await httpGet(addr, "/hog?mb=400", 30_000).catch(() => undefined);
    const after = await until(
      "the app is serving again after its OOM kill",
      async () => {
        const r = await row(sup, uuid);
        return r.last_limit_reason === "oom" && r.app_health === "serving" && r.workload_pid !== pid
          ? r
          : undefined;
      },
      30_000,
    );
    assert.ok((after.restarts as number) >= 1);
    assert.equal((await httpGet(addr, "/")).status, 200);
    const log = readFileSync(join(sup.dataDir, "runners", `${uuid}.log`), "utf8");
    assert.match(log, /"reason":"oom"/, "the runner's log says why");
  });

  test("vcpus: a deploy whose workload its vcpus cap holds back past the health deadline fails saying reason cpu; the old one keeps serving", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, appSpec({ limits: { vcpus: 1 } }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    // 3 s of CPU at 0.05 vCPU is a minute of wall time: far past the 10 s health deadline.
    const deployed = await sup.call(
      "POST",
      `/v1/apps/${uuid}/deploy`,
      appSpec({ limits: { vcpus: 0.05 }, env: { VERSION: "2", BURN_CPU_MS: "3000" } }),
    );
    assert.ok(deployed.status >= 400, JSON.stringify(deployed.json));
    assert.match(
      String(deployed.json.error),
      /held back by its vcpus cap \(reason cpu\)/,
      JSON.stringify(deployed.json),
    );
    assert.equal((await row(sup, uuid)).last_limit_reason, "cpu", "the app's row says why the deploy failed");
    const still = await httpGet(addr, "/");
    assert.equal(JSON.parse(still.body).version, "1", "the old workload still serves");
    const log = readFileSync(join(sup.dataDir, "runners", `${uuid}.log`), "utf8");
    assert.match(log, /reason cpu/, "the runner's log says why");
  });

  test("memory_mb: a deploy whose workload is killed over its limit before it answers fails saying reason oom; the old one keeps serving", async () => {
    const sup = await startSupervisor();
    const uuid = randomUuid();
    const limits = { memory_mb: 96 };
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, appSpec({ limits }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const addr = started.json.bound_addr as string;
    const deployed = await sup.call(
      "POST",
      `/v1/apps/${uuid}/deploy`,
      appSpec({ limits, env: { VERSION: "2", HOG_AT_START_MB: "400" } }),
    );
    assert.ok(deployed.status >= 400, JSON.stringify(deployed.json));
    assert.match(String(deployed.json.error), /over its limit \(reason oom\)/, JSON.stringify(deployed.json));
    const r = await row(sup, uuid);
    assert.equal(r.last_limit_reason, "oom", "the app's row says why the deploy failed");
    const still = await httpGet(addr, "/");
    assert.equal(still.status, 200);
    assert.equal(JSON.parse(still.body).version, "1", "the old workload still serves");
  });
});
