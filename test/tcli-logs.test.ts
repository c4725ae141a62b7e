/**
 * `tcli logs` end to end: a real supervisor joined to a real node, an app started on it, and its
 * runner log read through the node (merged, prefixed with the target) and followed across a
 * copy-truncate rotation, by the compiled tcli.
 */
import assert from "node:assert/strict";
import { appendFile, copyFile, truncate } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  fastSupervisorArgs,
  processSpec,
  randomUuid,
  SupervisorUnderTest,
  until,
} from "./runtime-plane-support.js";
import { NODE_KEY, runTcli, spawnTcli, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

describe("tcli logs through the node", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let home: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  let logFile: string;
  const admin = () => ({
    home: home.path,
    env: { TABBIFY_TOKEN: NODE_KEY, TABBIFY_NODE_URL: stack.node.url },
  });

  before(async () => {
    home = await tempDir("tcli-logs-home");
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec());
    assert.equal(started.status, 200, JSON.stringify(started.json));
    logFile = join(sup.dataDir, "runners", `${uuid}.log`);
    // The node registers an app first seen on the roster (tenant "default") within seconds.
    await until(
      "the app in the node's registry",
      async () => {
        const res = await fetch(`${stack.node.url}/api/v1/apps/${uuid}`, {
          headers: { authorization: `Bearer ${NODE_KEY}` },
        });
        await res.body?.cancel();
        return res.status === 200 ? true : undefined;
      },
      20_000,
    );
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await home?.remove();
  });

  it("prints the last lines, each prefixed with its target", async () => {
    await appendFile(logFile, "tcli-logs-line-one\ntcli-logs-line-two\n");
    const r = await runTcli(["logs", uuid, "--tail", "2"], admin());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "test-sup | tcli-logs-line-one\ntest-sup | tcli-logs-line-two\n");
    const json = await runTcli(["logs", uuid, "--tail", "1", "--json"], admin());
    assert.deepEqual(JSON.parse(json.stdout), { target: "test-sup", line: "tcli-logs-line-two" });
  });

  it("follows the live log across a copy-truncate rotation", async () => {
    const child = spawnTcli(["logs", uuid, "-f", "--tail", "0"], admin());
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      // The follower starts at the end of the log whenever it connects: write until it shows.
      await until(
        "the followed line",
        async () => {
          if (out.includes("test-sup | before-rotation\n")) return true;
          await appendFile(logFile, "before-rotation\n");
          return undefined;
        },
        15_000,
      );
      await copyFile(logFile, `${logFile}.1`);
      await truncate(logFile, 0);
      await appendFile(logFile, "after-rotation\n");
      await until(
        "the line after rotation",
        async () => (out.includes("test-sup | after-rotation\n") ? true : undefined),
        15_000,
      );
      // The rotated tail is found in .1 by a fresh reader.
      const r = await runTcli(["logs", uuid, "--tail", "2"], admin());
      assert.match(
        r.stdout,
        /test-sup \| before-rotation\ntest-sup \| after-rotation\n$/,
        r.stdout + r.stderr,
      );
    } finally {
      child.kill("SIGTERM");
    }
  });

  it("guards the supervisor route and scopes the node route to the app's tenant", async () => {
    const open = await fetch(`${sup.base}/v1/apps/${uuid}/logs`);
    assert.equal(open.status, 401);
    await open.body?.cancel();
    const bad = await sup.call("GET", `/v1/apps/${uuid}/logs?tail=lots`);
    assert.equal(bad.status, 400);
    const tenant = await runTcli(["logs", uuid], {
      home: home.path,
      env: { TABBIFY_TOKEN: stack.acmeToken, TABBIFY_NODE_URL: stack.node.url },
    });
    assert.equal(tenant.code, 1);
    assert.match(tenant.stderr, /is not in the registry/);
    const badTail = await runTcli(["logs", uuid, "--tail", "-3"], admin());
    assert.equal(badTail.code, 2);
  });

  it("stops and starts the app through the node, audited, tenant-scoped", async () => {
    const foreign = await runTcli(["stop", uuid], {
      home: home.path,
      env: { TABBIFY_TOKEN: stack.acmeToken, TABBIFY_NODE_URL: stack.node.url },
    });
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /is not in the registry/);
    assert.equal(
      (await sup.call("GET", `/v1/apps/${uuid}`)).json.state,
      "running",
      "a foreign stop changed nothing",
    );

    const stop = await runTcli(["stop", uuid, "--json"], admin());
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = JSON.parse(stop.stdout) as {
      action: string;
      targets: Array<{ supervisor: string; ok: boolean }>;
    };
    assert.deepEqual(
      stopped.targets.map((t) => [t.supervisor, t.ok]),
      [["test-sup", true]],
    );
    assert.equal((await sup.call("GET", `/v1/apps/${uuid}`)).json.state, "stopped");

    const start = await runTcli(["start", uuid], admin());
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, /^test-sup +ok +running/m);
    assert.equal((await sup.call("GET", `/v1/apps/${uuid}`)).json.state, "running");

    const res = await fetch(`${stack.node.url}/api/v1/audit?limit=1000`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    const { events } = (await res.json()) as { events: Array<{ action: string; actor: string }> };
    const ops = events
      .filter((e) => e.action === "app.stop" || e.action === "app.start")
      .map((e) => e.action);
    assert.deepEqual(ops, ["app.stop", "app.start"]);
    assert.ok(!JSON.stringify(events).includes(sup.apiKey), "the supervisor key is not in the audit");
  });

  it("rm asks for --yes off a terminal, then purges on the target and leaves the registry", async () => {
    const refused = await runTcli(["rm", uuid], admin());
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /pass --yes/);
    const rm = await runTcli(["rm", uuid, "--yes"], admin());
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /its versions stay in the artifact store/);
    const gone = await sup.call("GET", `/v1/apps/${uuid}`);
    assert.equal(gone.status, 404, JSON.stringify(gone.json));
    const status = await runTcli(["status", uuid], admin());
    assert.equal(status.code, 1);
    assert.match(status.stderr, /is not in the registry/);
  });
});
