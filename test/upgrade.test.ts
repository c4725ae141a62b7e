/**
 * Tabbify upgrades itself in place (issue 19), on a whole `tabbify up` with a process app, a wasm
 * app and a docker app running, plus a second supervisor on the node's roster (as on another
 * host: its own process and data dir, not kept by `up`) running a process app, and a request
 * loop on each app through the node's /app/<uuid> door:
 *
 *   1. a release of this tree with a bumped version: every role and both supervisors report it,
 *      no request fails, no runner, workload or container is replaced;
 *   2. a release whose supervisor exits at start: the command exits non-zero naming the
 *      supervisor, the running version keeps serving, no request fails;
 *   3. --rollback --restart-runners returns every role to the release before and hands every
 *      app to a new runner: new runner pids, no request fails;
 *   4. the upgrader killed while the node is handed over: `up` hands every role back, the other
 *      supervisor too; after `up` restarts the store says failed (never in progress) and exactly
 *      one node serves.
 *
 * Prints the handoff time per role and the loops' p99 at rest and during the upgrade.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { processSpec, randomUuid } from "./runtime-plane-support.js";
import { buildScratchImage, type RunningProcess, repoRoot, run, sleep, tempDir } from "./support/tools.js";
import { freeUpPorts, spawnUp, supervisorAuth, type UpPorts } from "./support/up-stack.js";
import {
  breakRole,
  RequestLoop,
  releaseTarball,
  rolePids,
  startOtherSupervisor,
} from "./support/upgrade-stack.js";

const roles = ["node", "registry", "auth", "supervisor"] as const;
// Unique per run: another run's cleanup must not remove this run's image.
const dockerImage = `tabbify-test/upgrade-${process.pid}:v1`;
const dockerStartScript = `/bin/busybox mkdir -p /tmp/www
echo "hello from docker" > /tmp/www/index.html
/bin/busybox httpd -f -p "$HOST:$PORT" -h /tmp/www &
pid=$!
trap 'kill $pid; wait $pid; exit 0' TERM
wait $pid
`;

interface Workload {
  uuid: string;
  runtime: string;
  /** The supervisor that runs it: `up`'s, or the other one. */
  supervisor: string;
  runnerPid: number;
  workloadPid: number;
  container: string | undefined;
}

describe("tabbify upgrade on a running tabbify up", { concurrency: false }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let data: string;
  let ports: UpPorts;
  let up: RunningProcess;
  let key: string;
  let baseVersion: string;
  let goodTarball: string;
  let brokenTarball: string;
  const nextVersion = () => `${baseVersion}-up1`;
  const apps: Workload[] = [];
  const loops: RequestLoop[] = [];
  let other: Awaited<ReturnType<typeof startOtherSupervisor>> | undefined;
  const localSupervisor = () => `http://127.0.0.1:${ports.supervisor}`;

  /** The version each role answers, the other supervisor's as `other`. */
  const versions = async () =>
    Object.fromEntries(
      await Promise.all(
        [...roles.map((role) => [role, `http://127.0.0.1:${ports[role]}`]), ["other", other!.url]].map(
          async ([role, url]) => {
            const res = await fetch(`${url}/api/version`);
            return [role, ((await res.json()) as { version: string }).version] as const;
          },
        ),
      ),
    );
  const everyRoleOn = (version: string) => Object.fromEntries([...roles, "other"].map((r) => [r, version]));

  const appState = async (app: { uuid: string; supervisor: string }) => {
    const res = await fetch(`${app.supervisor}/v1/apps/${app.uuid}`, {
      headers: await supervisorAuth(data),
    });
    return (await res.json()) as { pid: number; workload_pid: number; state: string };
  };
  const containerOf = (uuid: string) =>
    execFileSync("docker", ["ps", "-q", "--no-trunc", "--filter", `label=tabbify.app=${uuid}`], {
      encoding: "utf8",
    }).trim() || undefined;

  const upgrade = (args: string[]) =>
    run(
      process.execPath,
      [
        join(repoRoot, "dist", "src", "main", "tabbify.js"),
        "upgrade",
        ...args,
        "--node",
        `http://127.0.0.1:${ports.node}`,
        "--key-file",
        join(data, "node.key"),
      ],
      { timeoutMs: 900_000 },
    ).then(
      (out) => ({ code: 0, output: out.stdout + out.stderr }),
      (err: { exitCode: number; stdout: string; stderr: string }) => ({
        code: err.exitCode,
        output: err.stdout + err.stderr,
      }),
    );

  /** Every workload still the same process (and container) as when it started. */
  const assertUntouched = async () => {
    for (const app of apps) {
      const now = await appState(app);
      assert.equal(now.state, "running", app.runtime);
      assert.equal(now.pid, app.runnerPid, `${app.runtime}: runner pid`);
      assert.equal(now.workload_pid, app.workloadPid, `${app.runtime}: workload pid`);
      if (app.container) assert.equal(containerOf(app.uuid), app.container, "container id");
    }
  };

  const report = (label: string, phase: string) => {
    for (const loop of loops) {
      const rest = loop.stats("rest");
      const during = loop.stats(phase);
      console.log(
        `# ${label} ${loop.url.split("/app/")[1]?.slice(0, 8)}: at rest p50 ${rest.p50.toFixed(1)} ms p99 ${rest.p99.toFixed(1)} ms (n=${rest.n}); during p50 ${during.p50.toFixed(1)} ms p99 ${during.p99.toFixed(1)} ms (n=${during.n})`,
      );
    }
  };

  before(async () => {
    dir = await tempDir("tabbify-upgrade");
    data = join(dir.path, "data");
    baseVersion = (JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string })
      .version;
    goodTarball = await releaseTarball(dir.path, nextVersion());
    brokenTarball = await releaseTarball(dir.path, `${baseVersion}-broken`, breakRole("supervisor"));
    await buildScratchImage(dockerImage, {
      command: ["sh", "/start.sh"],
      files: { "/start.sh": dockerStartScript },
    });

    ports = await freeUpPorts();
    up = spawnUp(data, ports);
    await up.waitForLine(/Tabbify is up/, 90_000);
    key = (await readFile(join(data, "node.key"), "utf8")).trim();
    other = await startOtherSupervisor({
      dir: dir.path,
      name: "other",
      nodeUrl: `http://127.0.0.1:${ports.node}`,
      nodeKey: key,
      supervisorKey: (await readFile(join(data, "supervisor", "api.key"), "utf8")).trim(),
    });
    const specs: [string, Record<string, unknown>, string][] = [
      ["process", processSpec({ VERSION: "1" }), localSupervisor()],
      [
        "wasm",
        { runtime: "wasm", artifact_dir: join(repoRoot, "examples", "hello-wasm"), entry: "hello.wasm" },
        localSupervisor(),
      ],
      ["docker", { runtime: "docker", image: dockerImage }, localSupervisor()],
      ["process on the other supervisor", processSpec({ VERSION: "2" }), other.url],
    ];
    for (const [runtime, spec, supervisor] of specs) {
      const uuid = randomUuid();
      const res = await fetch(`${supervisor}/v1/apps/${uuid}/start`, {
        method: "POST",
        headers: { ...(await supervisorAuth(data)), "content-type": "application/json" },
        body: JSON.stringify(spec),
      });
      assert.equal(res.status, 200, `${runtime}: ${await res.text()}`);
      const state = await appState({ uuid, supervisor });
      apps.push({
        uuid,
        runtime,
        supervisor,
        runnerPid: state.pid,
        workloadPid: state.workload_pid,
        container: runtime === "docker" ? containerOf(uuid) : undefined,
      });
      // The node proxies once the supervisor's heartbeat has put the app on the roster.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const answer = await fetch(`http://127.0.0.1:${ports.node}/app/${uuid}/`).catch(() => undefined);
        if (answer?.status === 200) break;
        if (Date.now() > deadline) throw new Error(`${runtime} app never answered through the node`);
        await sleep(200);
      }
      loops.push(new RequestLoop(`http://127.0.0.1:${ports.node}/app/${uuid}/`));
    }
    assert.ok(apps.find((a) => a.runtime === "docker")?.container, "the docker app has a container");
    for (const loop of loops) loop.start();
    await sleep(5_000);
  });

  after(async () => {
    for (const loop of loops) await loop.stop();
    if (up) {
      for (const app of apps) {
        await fetch(`${app.supervisor}/v1/apps/${app.uuid}/purge`, {
          method: "POST",
          headers: await supervisorAuth(data),
        }).catch(() => {});
      }
      await other?.stop();
      await up.stop(20_000);
    }
    execFileSync("docker", ["rmi", "-f", dockerImage], { stdio: "ignore" });
    await dir?.remove();
  });

  it("rolls a bumped release over every role: no failed request, no workload restarted", async () => {
    for (const loop of loops) loop.phase = "upgrade";
    const t0 = performance.now();
    const result = await upgrade(["--to", goodTarball]);
    const total = performance.now() - t0;
    for (const loop of loops) loop.phase = "after";
    assert.equal(result.code, 0, result.output);
    console.log(`# upgrade to ${nextVersion()}: ${(total / 1000).toFixed(1)} s in all`);
    for (const line of result.output.split("\n").filter((l) => /handed over in/.test(l)))
      console.log(`# ${line}`);
    assert.deepEqual(await versions(), everyRoleOn(nextVersion()));
    assert.match(result.output, /supervisor@other handed over in/, "the other supervisor went in turn");
    const version = (await (await fetch(`http://127.0.0.1:${ports.node}/api/version`)).json()) as {
      commit: string | null;
    };
    assert.match(String(version.commit), /^[0-9a-f]{40}$/, "a packed release names its commit");
    await assertUntouched();
    report("upgrade", "upgrade");
    for (const loop of loops) assert.deepEqual(loop.newFailures(), [], loop.url);
  });

  it("a release whose supervisor exits at start is refused: non-zero, names the supervisor, old keeps serving", async () => {
    for (const loop of loops) loop.phase = "broken";
    const result = await upgrade(["--to", brokenTarball]);
    for (const loop of loops) loop.phase = "after";
    assert.notEqual(result.code, 0, result.output);
    assert.match(result.output, /failed: supervisor: .*exited with code 3/);
    assert.deepEqual(await versions(), everyRoleOn(nextVersion()));
    await assertUntouched();
    for (const loop of loops) assert.deepEqual(loop.newFailures(), [], loop.url);
    // The audit chain has the failure (AUDIT_PAGE_MAX is 1000; this stack has few events).
    const audit = await fetch(`http://127.0.0.1:${ports.node}/api/v1/audit?after=0&limit=1000`, {
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(audit.status, 200);
    const events = ((await audit.json()) as { events: { action: string; after: unknown }[] }).events;
    const failed = events.filter((e) => e.action === "platform.upgrade.failed");
    assert.equal(failed.length, 1);
    assert.match(JSON.stringify(failed[0]!.after), /supervisor/);
  });

  it("--rollback --restart-runners hands every role back and every app to a new runner", async () => {
    for (const loop of loops) loop.phase = "rollback";
    const result = await upgrade(["--rollback", "--restart-runners"]);
    for (const loop of loops) loop.phase = "after";
    assert.equal(result.code, 0, result.output);
    for (const line of result.output.split("\n").filter((l) => /runners of .* done in/.test(l)))
      console.log(`# ${line}`);
    assert.deepEqual(await versions(), everyRoleOn(baseVersion));
    // Each app answers from a new runner (and a new workload, started before the old one stopped).
    for (const app of apps) {
      const now = await appState(app);
      assert.equal(now.state, "running", app.runtime);
      assert.notEqual(now.pid, app.runnerPid, `${app.runtime}: a new runner`);
      assert.notEqual(now.workload_pid, app.workloadPid, `${app.runtime}: a new workload`);
      app.runnerPid = now.pid;
      app.workloadPid = now.workload_pid;
      if (app.container) {
        // The old runner stops its container once its last requests are answered.
        const deadline = Date.now() + 60_000;
        while ((containerOf(app.uuid) ?? "").includes("\n") && Date.now() < deadline) await sleep(250);
        const now = containerOf(app.uuid);
        assert.ok(now && !now.includes("\n"), `one container for ${app.runtime}: ${now}`);
        assert.notEqual(now, app.container, "a new container");
        app.container = now;
      }
    }
    await assertUntouched();
    report("rollback", "rollback");
    for (const loop of loops) assert.deepEqual(loop.newFailures(), [], loop.url);
  });

  it("an upgrader killed mid-node-handoff: every role handed back, the store says failed, one node serves", async () => {
    const auth = { authorization: `Bearer ${key}` };
    const body = await readFile(goodTarball);
    const started = await fetch(`http://127.0.0.1:${ports.node}/api/v1/platform/upgrade`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/octet-stream" },
      body,
    });
    assert.equal(started.status, 202);
    const { id } = (await started.json()) as { id: string };
    const deadline = Date.now() + 180_000;
    let killed = false;
    while (!killed) {
      assert.ok(Date.now() < deadline, "the upgrade never reached the node");
      const res = await fetch(`http://127.0.0.1:${ports.node}/api/v1/platform/upgrades/${id}`, {
        headers: auth,
      });
      const row = (await res.json()) as { phase: string; upgrader_pid: number | null; status: string };
      assert.equal(row.status, "in_progress", JSON.stringify(row));
      if (row.phase === "node" && row.upgrader_pid) {
        process.kill(row.upgrader_pid, "SIGKILL");
        killed = true;
      } else await sleep(25);
    }
    // up finishes the handoff under way, then hands every moved role back.
    await up.waitForLine(new RegExp(`upgrade ${id}: upgrader exited`), 120_000);
    for (const line of up
      .output()
      .split("\n")
      .filter((l) => / info up .*(upgrade|now runs|back on)/.test(l))) {
      console.log(`# ${line}`);
    }
    await up.stop(20_000);
    up = spawnUp(data, ports);
    await up.waitForLine(/Tabbify is up/, 90_000);
    const res = await fetch(`http://127.0.0.1:${ports.node}/api/v1/platform/upgrades/${id}`, {
      headers: auth,
    });
    const row = (await res.json()) as { status: string; error: string | null };
    // Killed before its commit, the upgrade cannot have stuck: `up` handed every role back.
    assert.equal(row.status, "failed", JSON.stringify(row));
    console.log(`# upgrader killed mid-node-handoff: ${row.status} (${row.error})`);
    assert.equal(rolePids("node", data).length, 1, "exactly one node");
    assert.deepEqual(await versions(), everyRoleOn(baseVersion));
    await assertUntouched();
  });
});
