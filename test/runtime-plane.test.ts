/**
 * The runtime plane end to end, with real processes: a `tabbify supervisor` spawning detached
 * `tabbify runner`s that serve apps on their own addresses, surviving the supervisor's kill -9,
 * re-adopted untouched, restarting crashed workloads, swapping versions under load, backing off
 * and parking crash loops, refusing bad input, and binding real ULAs in `ula` mode.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { APP_PORT, deriveAppLoopback, deriveAppUla } from "../src/core/address.js";
import {
  alive,
  childrenOf,
  fastSupervisorArgs,
  httpGet,
  processSpec,
  randomUuid,
  repoRoot,
  SupervisorUnderTest,
  sleep,
  sparesOf,
  tabbifyEntry,
  until,
  versionApp,
} from "./runtime-plane-support.js";
import { buildScratchImage } from "./support/tools.js";

const fastArgs = fastSupervisorArgs(5_000);

const supervisors: SupervisorUnderTest[] = [];
function newSupervisor(
  extra: string[] = [],
  mesh: "local" | "ula" = "local",
  env: NodeJS.ProcessEnv = {},
): SupervisorUnderTest {
  const s = new SupervisorUnderTest([...fastArgs, ...extra], mesh, env);
  supervisors.push(s);
  return s;
}
after(async () => {
  for (const s of supervisors) await s.cleanup();
});

const wasmSpec = {
  runtime: "wasm",
  artifact_dir: join(repoRoot, "examples", "hello-wasm"),
  entry: "hello.wasm",
};

const dockerImage = "tabbify-test/runtime-plane:v1";
// busybox httpd on HOST:PORT, graceful on SIGTERM (the same app as examples/hello-docker).
const dockerStartScript = `/bin/busybox mkdir -p /tmp/www
echo "hello from docker v\${VERSION:-1}" > /tmp/www/index.html
/bin/busybox httpd -f -p "$HOST:$PORT" -h /tmp/www &
pid=$!
trap 'kill $pid; wait $pid; exit 0' TERM
wait $pid
`;

interface AppUnderTest {
  uuid: string;
  runtime: string;
  addr: string;
  runnerPid: number;
  workloadPid: number;
}

describe("runtime plane", { concurrency: false }, () => {
  test("apps survive kill -9 of the supervisor, are re-adopted untouched, crashed workloads come back", async () => {
    const sup = newSupervisor();
    await sup.start();
    await buildScratchImage(dockerImage, {
      command: ["sh", "/start.sh"],
      files: { "/start.sh": dockerStartScript },
    });
    const specs: [string, Record<string, unknown>][] = [
      ["process", processSpec({ VERSION: "1" })],
      ["wasm", wasmSpec],
      ["docker", { runtime: "docker", image: dockerImage }],
    ];
    const apps: AppUnderTest[] = [];
    for (const [runtime, spec] of specs) {
      const uuid = randomUuid();
      if (runtime === "docker") sup.dockerApps.add(uuid);
      const t0 = performance.now();
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, spec);
      const ms = performance.now() - t0;
      assert.equal(started.status, 200, JSON.stringify(started.json));
      assert.equal(started.json.state, "running");
      assert.equal(started.json.app_ula, deriveAppUla(uuid));
      assert.equal(started.json.bound_addr, `${deriveAppLoopback(uuid)}:${APP_PORT}`);
      console.log(`# start → healthy (${runtime}): ${ms.toFixed(0)} ms`);
      const row = await sup.call("GET", `/v1/apps/${uuid}`);
      assert.equal(row.json.present, true);
      apps.push({
        uuid,
        runtime,
        addr: started.json.bound_addr as string,
        runnerPid: row.json.pid as number,
        workloadPid: row.json.workload_pid as number,
      });
      const res = await httpGet(started.json.bound_addr as string);
      assert.equal(res.status, 200, res.body);
    }
    // Starting a live app again is idempotent: same runner, same workload.
    const again = await sup.call("POST", `/v1/apps/${apps[0]!.uuid}/start`, processSpec({ VERSION: "1" }));
    assert.equal(again.status, 200);
    assert.equal(again.json.workload_pid, apps[0]!.workloadPid);

    await sup.kill9();
    for (const app of apps) {
      const res = await httpGet(app.addr);
      assert.equal(res.status, 200, `${app.runtime} app stopped answering without its supervisor`);
    }

    await sup.start();
    for (const app of apps) {
      const row = await sup.call("GET", `/v1/apps/${app.uuid}`);
      assert.equal(row.json.state, "running", JSON.stringify(row.json));
      assert.equal(row.json.pid, app.runnerPid, `${app.runtime}: runner replaced instead of adopted`);
      assert.equal(row.json.workload_pid, app.workloadPid, `${app.runtime}: workload restarted on adoption`);
      assert.equal(row.json.restarts, 0);
      assert.equal(row.json.restart_status, "running");
    }
    const listed = await sup.call("GET", "/v1/apps");
    assert.equal((listed.json.apps as unknown[]).length, apps.length);

    // A killed workload is restarted by its runner, after the runner's backoff.
    const app = apps[0]!;
    const killedAt = Date.now();
    process.kill(app.workloadPid, "SIGKILL");
    const back = await until("the workload to come back", async () => {
      const row = await sup.call("GET", `/v1/apps/${app.uuid}`);
      return row.json.app_health === "serving" && row.json.workload_pid !== app.workloadPid
        ? row.json
        : undefined;
    });
    assert.ok(Date.now() - killedAt >= 300, "restarted before the backoff delay");
    assert.equal(back.restarts, 1);
    assert.equal(back.pid, app.runnerPid, "the runner itself was not replaced");
    assert.equal((await httpGet(app.addr)).status, 200);

    // A killed runner is respawned by the supervisor, with backoff, and its orphan workload is stopped.
    const orphan = back.workload_pid as number;
    process.kill(app.runnerPid, "SIGKILL");
    const respawned = await until("the runner to be respawned", async () => {
      const row = await sup.call("GET", `/v1/apps/${app.uuid}`);
      return row.json.app_health === "serving" && row.json.pid !== app.runnerPid ? row.json : undefined;
    });
    assert.equal(respawned.restart_count, 1);
    assert.equal(respawned.restart_status, "backoff");
    assert.equal((await httpGet(app.addr)).status, 200);
    await until("the orphaned workload to be stopped", async () => (alive(orphan) ? undefined : true));

    // Stop keeps the record; stopped records are not respawned.
    const stopped = await sup.call("POST", `/v1/apps/${app.uuid}/stop`);
    assert.deepEqual(stopped.json, { state: "stopped" });
    await sleep(600);
    const row = await sup.call("GET", `/v1/apps/${app.uuid}`);
    assert.equal(row.json.state, "stopped");
    await assert.rejects(httpGet(app.addr, "/", 1000));
    for (const a of apps) assert.equal((await sup.call("POST", `/v1/apps/${a.uuid}/purge`)).status, 200);
  });

  test("warm spares: a start is served by the runner booted ahead; spares end with their supervisor", async () => {
    const sup = newSupervisor();
    await sup.start();
    const spareReady = (exclude: number[] = []) =>
      until("a warm spare", async () => {
        const spare = sparesOf(sup.dataDir).find((s) => !exclude.includes(s.pid));
        return spare && existsSync(spare.sock) ? spare : undefined;
      });

    const first = await spareReady();
    await until("/health to count the spare ready", async () => {
      const spares = (await sup.call("GET", "/health")).json.warm_spares as {
        ready: number;
        booting: number;
      };
      return spares.ready === 1 && spares.booting === 0 ? true : undefined;
    });
    const processUuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${processUuid}/start`, processSpec({ VERSION: "1" }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const row = await sup.call("GET", `/v1/apps/${processUuid}`);
    assert.equal(row.json.pid, first.pid, "the start did not take the spare booted ahead");
    assert.equal((await httpGet(started.json.bound_addr as string)).status, 200);
    // The spare now is this app's runner: ps and the supervisor's pid check see it as one.
    const title = readFileSync(`/proc/${first.pid}/cmdline`, "utf8");
    assert.match(title, new RegExp(`tabbify runner --uuid ${processUuid}`));
    const log = readFileSync(join(sup.dataDir, "runners", `${processUuid}.log`), "utf8");
    assert.match(log.split("\n")[0]!, /spare ready/, "the spare's log did not become the app's log");
    assert.equal(existsSync(first.sock), false, "the spare's own socket outlived its assignment");

    // A new spare boots once the start is done; a wasm start finds the wasm host it booted ahead.
    const second = await spareReady([first.pid]);
    const standby = await until("the spare's standby wasm host", async () =>
      childrenOf(second.pid).find((c) => c.args.some((a) => a.endsWith("wasm-host.js"))),
    );
    const wasmUuid = randomUuid();
    const wasmStarted = await sup.call("POST", `/v1/apps/${wasmUuid}/start`, wasmSpec);
    assert.equal(wasmStarted.status, 200, JSON.stringify(wasmStarted.json));
    const wasmRow = await sup.call("GET", `/v1/apps/${wasmUuid}`);
    assert.equal(wasmRow.json.pid, second.pid);
    assert.equal(wasmRow.json.workload_pid, standby.pid, "the wasm workload was booted cold");
    assert.equal((await httpGet(wasmStarted.json.bound_addr as string)).status, 200);

    // Unassigned spares go with their supervisor; assigned ones keep serving and are re-adopted.
    const third = await spareReady([first.pid, second.pid]);
    await sup.kill9();
    await until("the orphaned spare to exit", async () => (alive(third.pid) ? undefined : true), 5_000);
    assert.equal((await httpGet(started.json.bound_addr as string)).status, 200);
    await sup.start();
    for (const [uuid, pid] of [
      [processUuid, first.pid],
      [wasmUuid, second.pid],
    ] as const) {
      const adopted = await sup.call("GET", `/v1/apps/${uuid}`);
      assert.equal(adopted.json.pid, pid, "an assigned spare was not re-adopted");
    }
    assert.equal(existsSync(third.sock), false, "the dead spare's socket was not swept");
    await spareReady([first.pid, second.pid, third.pid]);
    for (const uuid of [processUuid, wasmUuid])
      assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
  });

  test("--warm-spares 0 boots no spare and spawns each runner on demand; /v1/about without a node", async () => {
    const sup = newSupervisor(["--warm-spares", "0"]);
    await sup.start();
    const uuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec());
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const row = await sup.call("GET", `/v1/apps/${uuid}`);
    const args = readFileSync(`/proc/${row.json.pid}/cmdline`, "utf8").split("\0");
    assert.equal(args[args.indexOf("--uuid") + 1], uuid);
    assert.deepEqual(sparesOf(sup.dataDir), []);
    // Without --node the supervisor is on no roster; /v1/about says so (SEED-FACTS §2).
    const health = await sup.call("GET", "/health");
    const about = await sup.call("GET", "/v1/about");
    assert.deepEqual(Object.keys(about.json).sort(), [
      "mesh_status",
      "peer_id",
      "tabbify_version",
      "uptime_secs",
      "version",
    ]);
    assert.equal(about.json.mesh_status, "no_mesh");
    assert.equal(about.json.peer_id, health.json.supervisor_id);
    assert.equal(about.json.version, health.json.version);
    assert.ok(Number.isInteger(about.json.uptime_secs) && (about.json.uptime_secs as number) >= 0);
    assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
  });

  // Both hops: the kernel's (the default where the supervisor has CAP_NET_ADMIN; `on` fails
  // saying what is missing) and the runner's userspace hop. The clients pool their connections.
  for (const hop of ["kernel", "userspace"] as const) {
    test(`swap under load, ${hop} hop: no keep-alive request fails and responses switch to the new version`, async () => {
      const sup = newSupervisor(["--kernel-hop", hop === "kernel" ? "on" : "off"]);
      await sup.start();
      const uuid = randomUuid();
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec({ VERSION: "1" }));
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const addr = started.json.bound_addr as string;
      assert.equal((await sup.call("GET", `/v1/apps/${uuid}`)).json.hop, hop);

      let stop = false;
      let ok = 0;
      const failures: string[] = [];
      const answers: { sentAt: number; doneAt: number; version: string }[] = [];
      const client = async () => {
        while (!stop) {
          try {
            const sentAt = performance.now();
            const res = await httpGet(addr, Math.random() < 0.2 ? "/slow?ms=150" : "/");
            if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
            else {
              ok += 1;
              const { version } = JSON.parse(res.body) as { version: string };
              answers.push({ sentAt, doneAt: performance.now(), version });
            }
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      };
      const clients = Array.from({ length: 8 }, client);
      await sleep(300);
      const t0 = performance.now();
      const deployed = await sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: "2" }));
      const t1 = performance.now();
      const swapMs = t1 - t0;
      assert.equal(deployed.status, 200, JSON.stringify(deployed.json));
      assert.equal(deployed.json.swapped, true);
      await sleep(300);
      stop = true;
      await Promise.all(clients);
      console.log(
        `# swap under load (${hop} hop): ${ok} requests ok, ${failures.length} failed, swap took ${swapMs.toFixed(0)} ms`,
      );
      assert.deepEqual(failures, []);
      // Before the deploy only v1 answers; every request sent after it returned gets v2.
      assert.ok(answers.filter((a) => a.doneAt < t0).every((a) => a.version === "1"));
      assert.ok(answers.some((a) => a.doneAt < t0));
      const afterSwap = answers.filter((a) => a.sentAt > t1);
      assert.ok(afterSwap.length > 0);
      assert.deepEqual([...new Set(afterSwap.map((a) => a.version))], ["2"]);

      // A new version that fails its health check is refused; the old one keeps serving.
      const bad = await sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ FAIL_HEALTH: "1" }));
      assert.equal(bad.status, 503);
      assert.match(String(bad.json.error), /old one keeps serving.*answered 500/);
      const still = await httpGet(addr);
      assert.equal(JSON.parse(still.body).version, "2");
      // Concurrent deploys of one app are serialized: both succeed, one after the other, and only
      // the last one's workload remains.
      const [d3, d4] = await Promise.all([
        sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: "3" })),
        sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: "4" })),
      ]);
      assert.equal(d3.status, 200, JSON.stringify(d3.json));
      assert.equal(d4.status, 200, JSON.stringify(d4.json));
      const serving = JSON.parse((await httpGet(addr)).body) as { version: string; pid: number };
      const pids = [d3.json.workload_pid as number, d4.json.workload_pid as number];
      assert.ok(pids.includes(serving.pid), `serving pid ${serving.pid} not among ${pids}`);
      const retired = pids.find((p) => p !== serving.pid)!;
      assert.equal(alive(retired), false, "the superseded workload was stopped");
      await sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: "2" }));

      // The record follows the version that serves, so a respawn runs it.
      const record = JSON.parse(
        execFileSync("cat", [join(sup.dataDir, "runners", `${uuid}.json`)], { encoding: "utf8" }),
      ) as { spec: { env: Record<string, string> } };
      assert.deepEqual(record.spec.env, { VERSION: "2" });
    });
  }

  test("docker: deploy by ref swaps containers; a killed runner's container is adopted by its successor", async () => {
    const sup = newSupervisor();
    await sup.start();
    await buildScratchImage(dockerImage, {
      command: ["sh", "/start.sh"],
      files: { "/start.sh": dockerStartScript },
    });
    const uuid = randomUuid();
    sup.dockerApps.add(uuid);
    const containers = () =>
      execFileSync("docker", ["ps", "-q", "--no-trunc", "--filter", `label=tabbify.app=${uuid}`], {
        encoding: "utf8",
      })
        .split("\n")
        .filter(Boolean);
    const cold = await sup.call("POST", `/v1/apps/${uuid}/deploy`, { runtime: "docker", ref: dockerImage });
    assert.equal(cold.status, 200, JSON.stringify(cold.json));
    assert.equal(cold.json.swapped, false);
    const addr = cold.json.bound_addr as string;
    assert.match((await httpGet(addr)).body, /hello from docker v1/);
    const swapped = await sup.call("POST", `/v1/apps/${uuid}/deploy`, {
      runtime: "docker",
      ref: dockerImage,
      env: { VERSION: "2" },
    });
    assert.equal(swapped.status, 200, JSON.stringify(swapped.json));
    assert.equal(swapped.json.swapped, true);
    assert.match((await httpGet(addr)).body, /hello from docker v2/);
    const before = containers();
    assert.equal(before.length, 1, "the old container was stopped after the swap");

    const row = await sup.call("GET", `/v1/apps/${uuid}`);
    process.kill(row.json.pid as number, "SIGKILL");
    const respawned = await until(
      "the runner to be respawned",
      async () => {
        const now = await sup.call("GET", `/v1/apps/${uuid}`);
        return now.json.app_health === "serving" && now.json.pid !== row.json.pid ? now.json : undefined;
      },
      30_000,
    );
    const after = containers();
    assert.deepEqual(after, before, "the container was replaced instead of adopted");
    assert.equal(respawned.workload_pid, row.json.workload_pid, "the app restarted on respawn");
    assert.match(
      (await httpGet(addr)).body,
      /hello from docker v2/,
      "the respawned runner runs the deployed version",
    );
    assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
    assert.deepEqual(containers(), []);
  });

  test("a crash-looping runner backs off, is parked, and comes back after reset", async () => {
    const sup = newSupervisor();
    await sup.start();
    const uuid = randomUuid();
    // The workload refuses to start while this file exists (checked at start only).
    const flag = join(sup.dataDir, "broken");
    const spec = {
      runtime: "process",
      artifact_dir: versionApp,
      command: ["sh", "-c", `test -e ${flag} && exit 3; exec node server.mjs`],
    };
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, spec);
    assert.equal(started.status, 200, JSON.stringify(started.json));
    writeFileSync(flag, "");
    const row0 = await sup.call("GET", `/v1/apps/${uuid}`);
    process.kill(-(row0.json.workload_pid as number), "SIGKILL");
    process.kill(row0.json.pid as number, "SIGKILL");

    const statuses = new Set<string>();
    const parked = await until(
      "the app to be parked",
      async () => {
        const row = await sup.call("GET", `/v1/apps/${uuid}`);
        statuses.add(row.json.restart_status as string);
        return row.json.crash_looped === true ? row.json : undefined;
      },
      30_000,
    );
    assert.equal(parked.restart_count, 10);
    assert.equal(parked.restart_status, "crashloop");
    assert.equal(parked.state, "stopped");
    assert.ok(statuses.has("backoff"), `saw ${[...statuses]}`);
    // Parked means no more respawns.
    await sleep(1500);
    assert.equal((await sup.call("GET", `/v1/apps/${uuid}`)).json.restart_count, 10);

    execFileSync("rm", [flag]);
    const reset = await sup.call("POST", `/v1/apps/${uuid}/reset`);
    assert.equal(reset.status, 200);
    assert.equal(reset.json.restart_count, 0);
    const serving = await until("the app to serve again after reset", async () => {
      const row = await sup.call("GET", `/v1/apps/${uuid}`);
      return row.json.app_health === "serving" ? row.json : undefined;
    });
    assert.equal(serving.crash_looped, false);
    assert.equal((await httpGet(started.json.bound_addr as string)).status, 200);
  });

  test("bad input is refused with a clear answer and nothing is left running", async () => {
    const sup = newSupervisor();
    await sup.start();
    const uuid = randomUuid();
    const cases: [string, string, unknown, number, RegExp][] = [
      ["POST", "/v1/apps/not-a-uuid/start", processSpec(), 400, /not a UUID/],
      ["GET", "/v1/apps/12345", undefined, 400, /not a UUID/],
      ["POST", `/v1/apps/${uuid}/start`, { runtime: "firecracker" }, 400, /unknown runtime "firecracker"/],
      ["POST", `/v1/apps/${uuid}/start`, { ...processSpec(), colour: "red" }, 400, /unknown field/],
      [
        "POST",
        `/v1/apps/${uuid}/start`,
        { ...processSpec(), artifact_dir: "/nonexistent/app" },
        404,
        /does not exist/,
      ],
      ["POST", `/v1/apps/${uuid}/start`, { ...processSpec(), artifact_dir: "relative/dir" }, 400, /absolute/],
      [
        "POST",
        `/v1/apps/${uuid}/start`,
        { ...processSpec(), command: ["./no-such-binary"] },
        404,
        /no-such-binary/,
      ],
      ["POST", `/v1/apps/${uuid}/stop`, undefined, 404, /no app/],
      ["POST", `/v1/apps/${uuid}/reset`, undefined, 404, /no app/],
      ["GET", `/v1/apps/${uuid}`, undefined, 404, /no app/],
    ];
    for (const [method, path, body, status, message] of cases) {
      const res = await sup.call(method, path, body);
      assert.equal(
        res.status,
        status,
        `${method} ${path} ${JSON.stringify(body)} → ${JSON.stringify(res.json)}`,
      );
      assert.match(String(res.json.error), message);
    }
    const missing = await sup.call("GET", `/v1/apps/${uuid}`);
    assert.equal(missing.json.present, false);

    // A command that exits at once: 503 with the log tail, no record, nothing running.
    const t0 = performance.now();
    const crash = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "process",
      artifact_dir: versionApp,
      command: ["sh", "-c", "echo dying-on-purpose >&2; exit 7"],
    });
    assert.equal(crash.status, 503, JSON.stringify(crash.json));
    assert.ok(
      performance.now() - t0 < 5000,
      "an app that exits at once is reported without waiting out the timeout",
    );
    assert.match(String(crash.json.runner_log_tail), /dying-on-purpose|code 7/);
    assert.match(String(crash.json.error), /exited/);
    assert.deepEqual((await sup.call("GET", "/v1/apps")).json.apps, []);
    await assert.rejects(httpGet(`${deriveAppLoopback(uuid)}:${APP_PORT}`, "/", 1000));
  });

  test("a runtime the host lacks is refused before anything starts", async () => {
    // This supervisor's docker client points at a daemon that does not exist.
    const sup = newSupervisor([], "local", { DOCKER_HOST: "unix:///nonexistent/docker.sock" });
    await sup.start();
    const health = await sup.call("GET", "/health");
    assert.equal(health.json.docker, false);
    assert.deepEqual(health.json.tags, ["supervisor", "process", "wasm"]);
    const uuid = randomUuid();
    const res = await sup.call("POST", `/v1/apps/${uuid}/start`, { runtime: "docker", image: "busybox" });
    assert.equal(res.status, 422, JSON.stringify(res.json));
    assert.match(String(res.json.error), /cannot run docker/);
    assert.deepEqual((await sup.call("GET", "/v1/apps")).json.apps, []);
  });

  test("a control socket that answers for another app is never adopted, and its pid is never signalled", async () => {
    const sup = newSupervisor();
    const uuid = randomUuid();
    const other = randomUuid();
    const runners = join(sup.dataDir, "runners");
    mkdirSync(runners, { recursive: true, mode: 0o700 });
    const sock = join(runners, `${uuid}.sock`);
    const impostor = net.createServer((conn) => {
      conn.once("data", () =>
        conn.end(
          `${JSON.stringify({ reply: "health", state: "running", app_uuid: other, app_ula: deriveAppUla(other), pid: process.pid, workload_pid: null, app_health: "serving", restarts: 0 })}\n`,
        ),
      );
    });
    await new Promise<void>((r) => impostor.listen(sock, r));
    try {
      writeFileSync(
        join(runners, `${uuid}.json`),
        JSON.stringify({
          uuid,
          pid: process.pid,
          control_sock: sock,
          app_ula: deriveAppUla(uuid),
          bound_addr: `${deriveAppLoopback(uuid)}:${APP_PORT}`,
          mesh: "local",
          parent: "test-sup",
          spawned_at: new Date(Date.now() - 60_000).toISOString(),
          restart: {
            consecutive_failures: 0,
            last_exit_at: null,
            next_retry_at: null,
            last_healthy_at: null,
          },
          spec: processSpec(),
          workload_pid: null,
          crash_looped: false,
          stopped: false,
        }),
        { mode: 0o600 },
      );
      await sup.start();
      await sleep(800);
      const row = await sup.call("GET", `/v1/apps/${uuid}`);
      sup.seenPids.delete(process.pid);
      assert.equal(row.json.state, "stopped");
      assert.match(String(row.json.adoption_error), new RegExp(`answers for app ${other}`));
      // The impostor's socket is still there and still answers: nobody replaced it.
      assert.ok(impostor.listening);
      assert.equal(row.json.restart_count, 1, "counted once, not respawned into the impostor's socket");
    } finally {
      impostor.close();
    }
  });

  test("supervisor and runners join the node's roster; the node key stays out of argv, records and logs", async () => {
    // A coordinator double speaking the roster wire format (src/mesh/roster.ts).
    const beats: { path: string; auth: string | undefined; body: Record<string, unknown> }[] = [];
    const node = http.createServer((req, res) => {
      let raw = "";
      req.on("data", (d) => {
        raw += d;
      });
      req.on("end", () => {
        beats.push({ path: req.url ?? "", auth: req.headers.authorization, body: JSON.parse(raw || "{}") });
        res.writeHead(200, { "content-type": "application/json" });
        const body = JSON.parse(raw || "{}") as { kind?: string; name?: string };
        res.end(JSON.stringify({ peer_id: `peer-${body.kind}-${body.name}`, heartbeat_interval_secs: 5 }));
      });
    });
    await new Promise<void>((r) => node.listen(0, "127.0.0.1", r));
    const nodeUrl = `http://127.0.0.1:${(node.address() as net.AddressInfo).port}`;
    const nodeKey = `node-key-${randomUuid()}`;
    try {
      const sup = newSupervisor(["--node", nodeUrl], "local", { TABBIFY_NODE_KEY: nodeKey });
      await sup.start();
      const uuid = randomUuid();
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec({ VERSION: "r" }));
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const runnerBeat = await until("the runner's registration", async () =>
        beats.find((b) => b.path === "/v1/mesh/register" && b.body.kind === "runner"),
      );
      assert.deepEqual(runnerBeat.body, {
        kind: "runner",
        name: uuid,
        app_uuid: uuid,
        parent: "test-sup",
        address: `http://${started.json.bound_addr}`,
        ula: deriveAppLoopback(uuid),
        version: runnerBeat.body.version,
        tags: ["runner"],
      });
      const supBeat = beats.find((b) => b.body.kind === "supervisor");
      assert.ok(supBeat, "the supervisor registered");
      assert.equal(supBeat.body.name, "test-sup");
      assert.equal(supBeat.body.address, sup.base);
      assert.deepEqual((supBeat.body.tags as string[]).slice(0, 3), ["supervisor", "process", "wasm"]);
      // Roster beats carry the node key; the supervisor's env lookups (`tcli env`) carry its own key.
      for (const b of beats)
        assert.equal(
          b.auth,
          b.path.startsWith("/v1/mesh/") ? `Bearer ${nodeKey}` : `Bearer ${sup.apiKey}`,
          b.path,
        );
      const about = await sup.call("GET", "/v1/about");
      assert.equal(about.json.mesh_status, "joined");
      assert.equal(about.json.peer_id, "peer-supervisor-test-sup");

      const row = await sup.call("GET", `/v1/apps/${uuid}`);
      const cmdline = readFileSync(`/proc/${row.json.pid}/cmdline`, "utf8");
      assert.ok(!cmdline.includes(nodeKey), "node key in the runner's argv");
      const workloadEnv = readFileSync(`/proc/${row.json.workload_pid}/environ`, "utf8");
      assert.ok(!workloadEnv.includes(nodeKey), "node key leaked into the workload's environment");
      for (const file of [`${uuid}.json`, `${uuid}.log`]) {
        assert.ok(
          !readFileSync(join(sup.dataDir, "runners", file), "utf8").includes(nodeKey),
          `node key in ${file}`,
        );
      }
      assert.ok(!sup.log.includes(nodeKey), "node key in the supervisor's log");
    } finally {
      node.closeAllConnections();
      node.close();
    }
  });

  test("ula mode binds the app's real ULA on lo and purge removes it", async () => {
    const ip = (args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
    const caps = execFileSync("sh", ["-c", "grep CapEff /proc/self/status"], { encoding: "utf8" });
    assert.ok(
      (BigInt(`0x${caps.split(/\s+/)[1]}`) >> 12n) & 1n,
      "this test needs CAP_NET_ADMIN: run the suite as root, or grant it with " +
        "`sudo setpriv --inh-caps +net_admin --ambient-caps +net_admin node scripts/test.mjs runtime-plane`",
    );
    // Without CAP_NET_ADMIN, ula mode is refused up front with a message saying why.
    const refused = spawnSync(
      "setpriv",
      [
        "--bounding-set",
        "-net_admin",
        "--inh-caps",
        "-net_admin",
        process.execPath,
        tabbifyEntry,
        "supervisor",
      ].concat([
        "--data",
        join(tmpdir(), `tbf-nocap-${randomUuid()}`),
        "--listen",
        "127.0.0.1:1",
        "--mesh",
        "ula",
      ]),
      { encoding: "utf8" },
    );
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /needs CAP_NET_ADMIN/);

    const sup = newSupervisor([], "ula");
    await sup.start();
    const uuid = randomUuid();
    const ula = deriveAppUla(uuid);
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec({ VERSION: "ula" }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    assert.equal(started.json.bound_addr, `[${ula}]:${APP_PORT}`);
    assert.match(ip(["-6", "addr", "show", "dev", "lo"]), new RegExp(`${ula}/128`));
    const res = await httpGet(`[${ula}]:${APP_PORT}`);
    assert.equal(JSON.parse(res.body).version, "ula");
    const purged = await sup.call("POST", `/v1/apps/${uuid}/purge`);
    assert.deepEqual(purged.json, { state: "purged", uuid });
    assert.doesNotMatch(ip(["-6", "addr", "show", "dev", "lo"]), new RegExp(`${ula}/128`));
  });
});
