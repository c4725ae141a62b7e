/**
 * Env values and logs per environment, end to end: one app registered with prod and staging, its
 * prod workload running as the app's own uuid and its staging workload as the staging uuid (UUID
 * v5 of the name under the app's, as promote deploys it), both on a real supervisor behind a real
 * node, driven by the compiled tcli. Each workload must get its own environment's values, a
 * change to one environment restarts only that one, and `tcli logs --env` reads the right runner.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { environmentUuid } from "../src/core/address.js";
import { fastSupervisorArgs, randomUuid, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

/** Answers with its GREETING and the uuid it was started for, and says at start which it is. */
const greetApp = `import http from "node:http";
console.log("greet-app starting for " + process.env.WHO);
http.createServer((_q, s) => s.end(JSON.stringify({ greeting: process.env.GREETING ?? null, who: process.env.WHO, pid: process.pid })))
  .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

describe("tcli env and logs per environment", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let home: { path: string; remove(): Promise<void> };
  let appDir: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  const staging = environmentUuid(uuid, "staging");
  const name = `envs-${uuid.slice(0, 8)}`;
  const admin = () => ({
    home: home.path,
    env: { TABBIFY_TOKEN: NODE_KEY, TABBIFY_NODE_URL: stack.node.url },
  });
  const served = async (runAs: string) => {
    const res = await fetch(`${stack.node.url}/app/${runAs}/`);
    assert.equal(res.status, 200);
    return (await res.json()) as { greeting: string | null; who: string; pid: number };
  };

  before(async () => {
    home = await tempDir("tcli-envs-home");
    appDir = await tempDir("tcli-envs-app");
    await writeFile(join(appDir.path, "greet.mjs"), greetApp);
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const put = await fetch(`${stack.node.url}/api/v1/apps/${name}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${NODE_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ uuid, tenant: "dev", environments: ["prod", "staging"] }),
    });
    assert.ok(put.status === 200 || put.status === 201, await put.text());
    for (const [runAs, who] of [
      [uuid, "prod"],
      [staging, "staging"],
    ] as const) {
      const started = await sup.call("POST", `/v1/apps/${runAs}/start`, {
        runtime: "process",
        artifact_dir: appDir.path,
        command: ["node", "greet.mjs"],
        env: { WHO: who },
      });
      assert.equal(started.status, 200, JSON.stringify(started.json));
    }
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await home?.remove();
    await appDir?.remove();
  });

  it("gives each environment's workloads that environment's values, restarting only it", async () => {
    const prodSet = await runTcli(["env", "set", name, "--from-stdin"], {
      ...admin(),
      stdin: "GREETING=hello-prod\n",
    });
    assert.equal(prodSet.code, 0, prodSet.stderr);
    assert.match(prodSet.stdout, /\(prod\): set GREETING/);
    const stagingBefore = await served(staging);
    assert.equal(stagingBefore.greeting, null, "prod's value never reaches staging");
    assert.equal((await served(uuid)).greeting, "hello-prod");

    const stagingSet = await runTcli(["env", "set", name, "--env", "staging", "--from-stdin", "--json"], {
      ...admin(),
      stdin: "GREETING=hello-staging\n",
    });
    assert.equal(stagingSet.code, 0, stagingSet.stderr);
    const answer = JSON.parse(stagingSet.stdout) as {
      environment: string;
      restart: { environment: string; run_as: string; targets: Array<{ ok: boolean }> };
    };
    assert.equal(answer.environment, "staging");
    assert.equal(answer.restart.run_as, staging, "the restart reached the staging workloads");
    assert.deepEqual(
      answer.restart.targets.map((t) => t.ok),
      [true],
    );
    const stagingAfter = await served(staging);
    assert.equal(stagingAfter.who, "staging");
    assert.equal(stagingAfter.greeting, "hello-staging");
    assert.notEqual(stagingAfter.pid, stagingBefore.pid, "a fresh staging workload");
    const prod = await served(uuid);
    assert.equal(prod.greeting, "hello-prod", "prod keeps its own value");

    const list = await runTcli(["env", "list", name, "--env", "staging", "--reveal", "--json"], admin());
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as { values: unknown }).values, { GREETING: "hello-staging" });
  });

  it("reads each environment's runner log with logs --env, and refuses an unknown environment", async () => {
    const stagingLogs = await runTcli(["logs", name, "--env", "staging", "--tail", "200"], admin());
    assert.equal(stagingLogs.code, 0, stagingLogs.stderr);
    assert.match(stagingLogs.stdout, /^test-sup \| greet-app starting for staging$/m);
    assert.doesNotMatch(stagingLogs.stdout, /starting for prod/);
    const prodLogs = await runTcli(["logs", name, "--tail", "200"], admin());
    assert.equal(prodLogs.code, 0, prodLogs.stderr);
    assert.match(prodLogs.stdout, /greet-app starting for prod/);
    assert.doesNotMatch(prodLogs.stdout, /starting for staging/);
    const unknown = await runTcli(["logs", name, "--env", "qa"], admin());
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /has no environment "qa" \(it has prod, staging\)/);
  });

  it("keeps a staging runner from becoming an app of its own; stops one environment only", async () => {
    await until(
      "both runners on the roster",
      async () => {
        const res = await fetch(`${stack.node.url}/v1/apps`, {
          headers: { authorization: `Bearer ${NODE_KEY}` },
        });
        const body = (await res.json()) as { apps?: Array<{ uuid?: string }> };
        const seen = new Set(body.apps?.map((a) => a.uuid));
        return seen.has(uuid) && seen.has(staging) ? true : undefined;
      },
      20_000,
    );
    // The sweep runs every 2 s: give it two rounds after the runners appeared.
    await new Promise((r) => setTimeout(r, 4_500));
    const apps = await runTcli(["apps", "--json"], admin());
    assert.equal(apps.code, 0, apps.stderr);
    const uuids = (JSON.parse(apps.stdout) as Array<{ uuid: string }>).map((a) => a.uuid);
    assert.ok(uuids.includes(uuid));
    assert.ok(!uuids.includes(staging), "the staging runner is the app's, not a new app");
    const stop = await runTcli(["stop", name, "--env", "staging", "--json"], admin());
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await sup.call("GET", `/v1/apps/${staging}`)).json.state, "stopped");
    assert.equal((await sup.call("GET", `/v1/apps/${uuid}`)).json.state, "running", "prod untouched");
  });
});
