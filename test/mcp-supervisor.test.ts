/**
 * The MCP endpoint's start_app and stop_app against a real supervisor running a process app: the
 * SDK's own client, a tenant token, the workload really stopping and starting (its pid, the
 * node's `/app/<uuid>/` door), another tenant refused with the app left running, and each call an
 * audit row `via: mcp` by the token's actor.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { fastSupervisorArgs, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { fetchAudit } from "./support/apps-api.js";
import { mcpClient, resultText } from "./support/mcp-node.js";
import { NODE_KEY, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const pidApp = `import http from "node:http";
http.createServer((_q, s) => s.end(JSON.stringify({ pid: process.pid }))).listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

interface Event {
  action: string;
  subject: string;
  actor: string;
  after: { via?: string; ok?: boolean } | null;
}

describe("MCP start_app and stop_app on a real supervisor", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let appDir: { path: string; remove(): Promise<void> };
  let acme: Client;
  let globex: Client;
  let uuid = "";

  const state = async () =>
    (await sup.call("GET", `/v1/apps/${uuid}`)).json as { state?: string; workload_pid?: number };
  const served = async (): Promise<number | undefined> => {
    const res = await fetch(`${stack.node.url}/app/${uuid}/`);
    if (res.status !== 200) {
      await res.body?.cancel();
      return undefined;
    }
    return ((await res.json()) as { pid: number }).pid;
  };
  const audit = async () => (await fetchAudit(stack.node.url, NODE_KEY, 200)) as unknown as Event[];

  before(async () => {
    appDir = await tempDir("mcp-sup-app");
    await writeFile(join(appDir.path, "pid.mjs"), pidApp);
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const app = await fetch(`${stack.node.url}/api/v1/apps/acme-web`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    uuid = ((await app.json()) as { uuid: string }).uuid;
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "process",
      artifact_dir: appDir.path,
      command: ["node", "pid.mjs"],
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    await until("acme-web served through the node", served, 30_000);
    acme = await mcpClient(stack.node.url, stack.acmeToken);
    globex = await mcpClient(stack.node.url, stack.globexToken);
  });
  after(async () => {
    await acme?.close();
    await globex?.close();
    await sup?.cleanup();
    await stack?.close();
    await appDir?.remove();
  });

  it("another tenant's stop_app is refused, audited, and the app keeps serving", async () => {
    const before = await served();
    const res = await globex.callTool({ name: "stop_app", arguments: { app: "acme-web" } });
    assert.equal(res.isError, true, resultText(res));
    assert.match(resultText(res), /APP_NOT_FOUND/);
    assert.equal((await state()).state, "running");
    assert.equal(await served(), before, "the same workload still serves");
    const refused = (await audit()).find((e) => e.action === "mcp.stop_app" && e.after?.ok === false);
    assert.ok(refused, "the refused call is an audit row");
    assert.equal(refused.after?.via, "mcp");
    assert.match(refused.actor, /globex/);
  });

  it("stop_app stops the workload on the supervisor; start_app brings a new one up", async () => {
    const first = await served();
    const stop = await acme.callTool({ name: "stop_app", arguments: { app: "acme-web" } });
    assert.notEqual(stop.isError, true, resultText(stop));
    const stopped = JSON.parse(resultText(stop)) as {
      action: string;
      targets: { supervisor: string; ok: boolean }[];
    };
    assert.equal(stopped.action, "stop");
    assert.deepEqual(
      stopped.targets.map((t) => [t.supervisor, t.ok]),
      [["test-sup", true]],
    );
    await until("the supervisor says stopped", async () =>
      (await state()).state === "stopped" ? true : undefined,
    );
    assert.equal(await served(), undefined, "nothing serves the app while it is stopped");

    const start = await acme.callTool({ name: "start_app", arguments: { app: "acme-web" } });
    assert.notEqual(start.isError, true, resultText(start));
    const again = await until("a new workload serving", async () => {
      const pid = await served();
      return pid !== undefined && pid !== first ? pid : undefined;
    });
    assert.equal((await state()).workload_pid, again);

    const events = await audit();
    for (const [tool, rest] of [
      ["mcp.stop_app", "app.stop"],
      ["mcp.start_app", "app.start"],
    ] as const) {
      const mcp = events.find((e) => e.action === tool && e.after?.ok !== false);
      assert.ok(mcp, `no ${tool} row`);
      assert.equal(mcp.after?.via, "mcp");
      assert.equal(mcp.subject, "app:acme-web");
      assert.match(mcp.actor, /acme/);
      const row = events.find((e) => e.action === rest);
      assert.ok(row, `no ${rest} row`);
      assert.equal(row.actor, mcp.actor, "the REST row has the token's actor too");
    }
  });
});
