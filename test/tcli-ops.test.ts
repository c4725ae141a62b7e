/**
 * tcli's everyday operations end to end against a real node and a real supervisor: restart (a
 * zero-downtime swap to the same release), a stopped app's door answering 503 APP_STOPPED, a failed start showing the app's own last stderr
 * lines, `start` after a node restart for an app without `servers`, `deploys` and
 * `logs --deploy`, `rm --artifacts` emptying the artifact store of the app, and `tcli status`
 * saying idle / running for an on_request app.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { fastSupervisorArgs, randomUuid, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

/** Serves until FAIL_FILE exists; then writes a marker to stderr and exits 3 at start. */
const gateApp = `import http from "node:http";
import { existsSync } from "node:fs";
if (existsSync(process.env.FAIL_FILE)) {
  console.error("gate-stderr-marker: refusing to start, FAIL_FILE is there");
  process.exit(3);
}
http.createServer((_q, s) => s.end(JSON.stringify({ pid: process.pid }))).listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

describe("tcli operations through the node", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let home: { path: string; remove(): Promise<void> };
  let appDir: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  const failFile = join(tmpdir(), `tcli-ops-fail-${uuid}`);
  const admin = () => ({
    home: home.path,
    env: { TABBIFY_TOKEN: NODE_KEY, TABBIFY_NODE_URL: stack.node.url },
  });
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.node.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${NODE_KEY}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };

  before(async () => {
    home = await tempDir("tcli-ops-home");
    appDir = await tempDir("tcli-ops-app");
    await writeFile(join(appDir.path, "gate.mjs"), gateApp);
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "process",
      artifact_dir: appDir.path,
      command: ["node", "gate.mjs"],
      env: { FAIL_FILE: failFile },
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    await until(
      "the app in the node's registry",
      async () => ((await api("GET", `/api/v1/apps/${uuid}`)).status === 200 ? true : undefined),
      20_000,
    );
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await home?.remove();
    await appDir?.remove();
    await rm(failFile, { force: true });
  });

  it("restarts with a swap: a new workload serves, the runner stays", async () => {
    const before = (await sup.call("GET", `/v1/apps/${uuid}`)).json as { pid: number; workload_pid: number };
    const r = await runTcli(["restart", uuid, "--json"], admin());
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as {
      action: string;
      targets: Array<{ ok: boolean; state?: string }>;
    };
    assert.equal(answer.action, "restart");
    assert.deepEqual(
      answer.targets.map((t) => t.ok),
      [true],
    );
    const after = (await sup.call("GET", `/v1/apps/${uuid}`)).json as {
      pid: number;
      workload_pid: number;
      state: string;
    };
    assert.equal(after.state, "running");
    assert.equal(after.pid, before.pid, "the same runner");
    assert.notEqual(after.workload_pid, before.workload_pid, "a fresh workload");
    const served = await fetch(`${stack.node.url}/app/${uuid}/`);
    assert.equal(served.status, 200);
    assert.equal(((await served.json()) as { pid: number }).pid, after.workload_pid);
  });

  it("tcli status says idle while an on_request app sleeps, and running once a request through the node woke it", async () => {
    const sleeper = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${sleeper}/start`, {
      runtime: "process",
      artifact_dir: appDir.path,
      command: ["node", "gate.mjs"],
      env: { FAIL_FILE: failFile },
      lifecycle: { mode: "on_request", idle_timeout_sec: 1 },
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const stateInStatus = async () => {
      const r = await runTcli(["status", sleeper, "--json"], admin());
      if (r.code !== 0) return undefined;
      const status = JSON.parse(r.stdout) as { targets: Array<{ supervisor_says?: { state?: string } }> };
      return status.targets[0]?.supervisor_says?.state;
    };
    await until(
      "tcli status says idle",
      async () => ((await stateInStatus()) === "idle" ? true : undefined),
      30_000,
    );
    const human = await runTcli(["status", sleeper], admin());
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^test-sup .*\bidle\b/m, human.stdout);
    const woken = await fetch(`${stack.node.url}/app/${sleeper}/`);
    assert.equal(woken.status, 200, "the request through the node woke it");
    // Kept awake (a request every 300 ms, under its 1 s idle timeout) while tcli status is asked.
    let awake = true;
    const keepAwake = (async () => {
      while (awake) {
        await fetch(`${stack.node.url}/app/${sleeper}/`)
          .then((r) => r.arrayBuffer())
          .catch(() => {});
        await sleep(300);
      }
    })();
    try {
      await until(
        "tcli status says running",
        async () => ((await stateInStatus()) === "running" ? true : undefined),
        30_000,
      );
    } finally {
      awake = false;
      await keepAwake;
    }
    await sup.call("POST", `/v1/apps/${sleeper}/purge`);
  });

  it("after a node restart, start finds the target of an app without servers", async () => {
    const stop = await runTcli(["stop", uuid], admin());
    assert.equal(stop.code, 0, stop.stderr);
    await stack.restartNode();
    await until(
      "the supervisor back on the new node's roster",
      async () => {
        const res = await api("GET", "/v1/supervisors");
        return (res.json.supervisors as unknown[] | undefined)?.length ? true : undefined;
      },
      30_000,
    );
    const start = await runTcli(["start", uuid], admin());
    assert.equal(start.code, 0, start.stderr + start.stdout);
    assert.match(start.stdout, /^test-sup +ok +running/m);
  });

  it("a stopped app's door answers 503 APP_STOPPED; an unknown app's 404", async () => {
    assert.equal((await runTcli(["stop", uuid], admin())).code, 0);
    const door = await fetch(`${stack.node.url}/app/${uuid}/`);
    assert.equal(door.status, 503, "known and stopped: not 502, not 404");
    const body = (await door.json()) as { code: string; error: string };
    assert.equal(body.code, "APP_STOPPED");
    assert.match(body.error, /is stopped: it runs nowhere \(tcli start /);
    const unknown = await fetch(`${stack.node.url}/app/${randomUuid()}/`);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, "APP_NOT_FOUND");
    const start = await runTcli(["start", uuid], admin());
    assert.equal(start.code, 0, start.stderr + start.stdout);
    assert.equal((await fetch(`${stack.node.url}/app/${uuid}/`)).status, 200);
  });

  it("a failed start answers with the app's last stderr lines, in the reply and in tcli", async () => {
    assert.equal((await runTcli(["stop", uuid], admin())).code, 0);
    await writeFile(failFile, "");
    const start = await runTcli(["start", uuid], admin());
    assert.equal(start.code, 1, start.stdout);
    assert.match(
      start.stdout,
      /last lines of the app's log on test-sup:\n[\s\S]*gate-stderr-marker: refusing to start/,
    );
    assert.match(start.stderr, /start failed on test-sup/);
    // The app's output is shown to the caller, never written into the audit chain.
    const audit = await api("GET", "/api/v1/audit?limit=1000");
    assert.ok(!JSON.stringify(audit.json).includes("gate-stderr-marker"));
    await rm(failFile, { force: true });
  });

  it("lists an app's deploys and prints a deploy's log; unknown ids and other tenants are 404", async () => {
    const none = await runTcli(["deploys", uuid], admin());
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, "no deploys yet\n");
    const noLog = await runTcli(["logs", uuid, "--deploy"], admin());
    assert.equal(noLog.code, 1);
    assert.match(noLog.stderr, /has not been deployed yet/);
    // A deploy record of this app, as the pipeline writes them.
    const store = stack.node.store;
    assert.ok(store);
    const id = randomUuid();
    await store.db
      .insertInto("deploys")
      .values({
        id,
        status: "failed",
        created_at: new Date().toISOString(),
        finished_at: new Date().toISOString(),
        app_uuid: uuid,
        image_ref: null,
        digest: null,
        request: JSON.stringify({ trigger: "api", ref: "main", repoUrl: "https://example.invalid/r.git" }),
        results: JSON.stringify([{ supervisor: "test-sup", success: false, error: "boom" }]),
        error: JSON.stringify({ code: "BUILD_FAILED", message: "the build failed", step: "build" }),
        owner: "test",
      })
      .execute();
    const events = [
      { step: "build", type: "step_started", message: "building image" },
      { step: "build", type: "step_failed", message: "RUN npm ci exited 1" },
    ];
    let seq = 0;
    for (const e of events) {
      seq += 1;
      await store.db
        .insertInto("deploy_events")
        .values({ deploy_id: id, seq, ts: new Date().toISOString(), data: null, ...e })
        .execute();
    }
    const list = await runTcli(["deploys", uuid], admin());
    assert.equal(list.code, 0, list.stderr);
    assert.match(
      list.stdout,
      new RegExp(`^\\S+ +${id} +failed +api +main .*test-sup:failed +BUILD_FAILED: the build failed$`, "m"),
    );
    const all = await runTcli(["deploys", "--json"], admin());
    assert.ok((JSON.parse(all.stdout) as Array<{ id: string }>).some((d) => d.id === id));
    const log = await runTcli(["logs", uuid, "--deploy", id], admin());
    assert.equal(log.code, 0, log.stderr);
    assert.match(
      log.stdout,
      /build step_started: building image\n.* build step_failed: RUN npm ci exited 1\n$/,
    );
    const latest = await runTcli(["logs", uuid, "--deploy"], admin());
    assert.equal(latest.stdout, log.stdout);
    const unknown = await runTcli(["logs", uuid, "--deploy", randomUuid()], admin());
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no deploy .* of app/);
    const foreign = await runTcli(["deploys", uuid], {
      home: home.path,
      env: { TABBIFY_TOKEN: stack.acmeToken, TABBIFY_NODE_URL: stack.node.url },
    });
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /is not in the registry/);
  });

  it("rm --artifacts purges the targets and deletes every version from the store", async () => {
    const storeDir = join(home.path, "store");
    const pushDir = join(home.path, "rm-me");
    await mkdir(pushDir, { recursive: true });
    await writeFile(
      join(pushDir, "manifest.toml"),
      '[app]\nname = "rm-me"\n\n[lifecycle]\nmode = "always_on"\n\n[runtime]\ntype = "process"\ncommand = ["node", "server.js"]\n',
    );
    await writeFile(
      join(pushDir, "server.js"),
      'require("node:http").createServer((q, s) => s.end("hi")).listen(Number(process.env.PORT), process.env.HOST);\n',
    );
    const pushed = await runTcli(["push", pushDir, "--store-dir", storeDir, "--json"], admin());
    const pushedJson = JSON.parse(pushed.stdout) as {
      appId: string;
      release?: { rollout?: { state?: string } };
    };
    // Exit 1 when the node could not start the pushed version (this store is the CLI's alone).
    assert.equal(pushed.code, pushedJson.release?.rollout?.state === "failed" ? 1 : 0, pushed.stderr);
    const appId = pushedJson.appId;
    assert.ok(existsSync(join(storeDir, "apps", appId, "v1", "manifest.toml")));
    // The push registered a release, which put the app in the registry (the admin's tenant); the
    // PUT makes sure the record is there either way.
    const put = await api("PUT", "/api/v1/apps/rm-me", { uuid: appId, tenant: "default" });
    assert.ok(put.status === 201 || put.status === 200, JSON.stringify(put.json));
    const r = await runTcli(["rm", "rm-me", "--yes", "--artifacts", "--store-dir", storeDir], admin());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted 1 version of it from local:/);
    assert.equal(existsSync(join(storeDir, "apps", appId)), false);
  });
});
