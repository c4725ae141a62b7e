import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { nodeKeyActor } from "../src/node/apps-identity.js";
import { fetchAudit } from "./support/apps-api.js";
import { type McpNode, mcpClient, resultText, startMcpNode } from "./support/mcp-node.js";

interface Event {
  action: string;
  subject: string;
  actor: string;
  after: unknown;
}

const audit = async (up: McpNode) => (await fetchAudit(up.node.url, up.nodeKey, 100)) as unknown as Event[];

describe("the node's MCP endpoint, driven by the SDK's own client", () => {
  let up: McpNode;
  let admin: Client;
  let acme: Client;

  before(async () => {
    up = await startMcpNode();
    admin = await mcpClient(up.node.url, up.nodeKey);
    acme = await mcpClient(up.node.url, up.acmeToken);
  });
  after(async () => {
    await admin?.close();
    await acme?.close();
    await up?.node.close();
  });

  it("lists the seed's tools and the later issues' ones, each with an object input schema", async () => {
    const { tools } = await admin.listTools();
    const names = tools.map((t) => t.name).sort();
    for (const name of [
      "list_supervisors",
      "list_apps",
      "get_app",
      "start_app",
      "stop_app",
      "deploy",
      "deploy_status",
      "logs_tail",
      "releases",
      "promote",
      "rollback",
      "audit_tail",
    ]) {
      assert.ok(names.includes(name), `tool ${name} missing from ${names.join(", ")}`);
    }
    const getApp = tools.find((t) => t.name === "get_app");
    assert.equal(getApp?.inputSchema.type, "object");
    assert.deepEqual(getApp?.inputSchema.required, ["app"]);
  });

  it("lists apps: the node key sees every tenant's, a tenant token its own", async () => {
    const all = JSON.parse(resultText(await admin.callTool({ name: "list_apps", arguments: {} }))) as {
      apps: { name: string }[];
    };
    assert.deepEqual(all.apps.map((a) => a.name).sort(), ["acme-web", "other-web"]);
    const mine = JSON.parse(resultText(await acme.callTool({ name: "list_apps", arguments: {} }))) as {
      apps: { name: string }[];
    };
    assert.deepEqual(
      mine.apps.map((a) => a.name),
      ["acme-web"],
    );
  });

  it("gets, stops and starts an app through the REST routes, each call audited via mcp", async () => {
    const got = await acme.callTool({ name: "get_app", arguments: { app: "acme-web" } });
    assert.notEqual(got.isError, true, resultText(got));
    assert.equal((JSON.parse(resultText(got)) as { tenant: string }).tenant, "acme");
    for (const [tool, action] of [
      ["stop_app", "stop"],
      ["start_app", "start"],
    ] as const) {
      const res = await acme.callTool({ name: tool, arguments: { app: "acme-web" } });
      assert.notEqual(res.isError, true, resultText(res));
      const body = JSON.parse(resultText(res)) as { action: string; targets: { supervisor: string }[] };
      assert.equal(body.action, action);
      // edge-1 is the app's target; it is not on this node's roster, and the answer says so.
      assert.deepEqual(
        body.targets.map((t) => t.supervisor),
        ["edge-1"],
      );
    }
    const events = await audit(up);
    const mcp = events.filter((e) => e.action.startsWith("mcp."));
    for (const action of ["mcp.get_app", "mcp.stop_app", "mcp.start_app"]) {
      const event = mcp.find((e) => e.action === action);
      assert.ok(event, `no ${action} event in ${JSON.stringify(mcp.map((e) => e.action))}`);
      assert.equal((event.after as { via?: string }).via, "mcp");
      assert.equal(event.subject, "app:acme-web");
      assert.match(event.actor, /agent|acme/);
    }
    // The REST route's own audit event is there too, by the same actor.
    const stop = events.find((e) => e.action === "app.stop");
    assert.ok(stop);
    assert.equal(stop.actor, mcp.find((e) => e.action === "mcp.stop_app")?.actor);
    assert.notEqual(stop.actor, nodeKeyActor(up.nodeKey));
  });

  it("refuses another tenant's app, as REST does, and audits the refusal", async () => {
    const res = await acme.callTool({ name: "stop_app", arguments: { app: "other-web" } });
    assert.equal(res.isError, true);
    assert.match(resultText(res), /APP_NOT_FOUND|FORBIDDEN/);
    const events = await audit(up);
    assert.equal(
      events.some((e) => e.action === "app.stop" && e.subject === "app:other-web"),
      false,
      "the other tenant's app was not stopped",
    );
    const refused = events.find((e) => e.action === "mcp.stop_app" && e.subject === "app:other-web");
    assert.ok(refused, "the refused call is audited");
    assert.deepEqual(
      [(refused.after as { ok?: boolean }).ok, (refused.after as { via?: string }).via],
      [false, "mcp"],
    );
  });

  it("refuses input that breaks the tool's schema before calling anything", async () => {
    const res = await admin.callTool({ name: "logs_tail", arguments: { app: "acme-web", tail: "lots" } });
    assert.equal(res.isError, true);
    assert.match(resultText(res), /invalid input: \/tail/);
  });
});
