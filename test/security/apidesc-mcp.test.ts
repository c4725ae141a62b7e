import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { type McpNode, mcpClient, resultText, startMcpNode } from "../support/mcp-node.js";

/** Attacks on the node's described API: `POST /mcp`, `/openapi.json` and `/docs`. */

const initialize = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "x", version: "1" } },
});

describe("apidesc attacks", () => {
  let up: McpNode;
  let acme: Client;
  before(async () => {
    up = await startMcpNode();
    acme = await mcpClient(up.node.url, up.acmeToken);
  });
  after(async () => {
    await acme?.close();
    await up?.node.close();
  });

  it("POST /mcp without a credential, or with a wrong one, is 401 before any JSON-RPC", async () => {
    for (const authorization of [undefined, "Bearer wrong", `Bearer ${up.nodeKey}x`, "Basic Zm9vOmJhcg=="]) {
      const res = await fetch(`${up.node.url}/mcp`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          ...(authorization ? { authorization } : {}),
        },
        body: initialize,
      });
      const body = (await res.json()) as { code?: string; jsonrpc?: string };
      assert.equal(res.status, 401, `${authorization}: ${JSON.stringify(body)}`);
      assert.equal(body.code, "UNAUTHORIZED");
      assert.equal(body.jsonrpc, undefined);
    }
  });

  it("a tenant token cannot reach node-key-only tools through MCP", async () => {
    for (const [name, args] of [
      ["list_supervisors", {}],
      ["audit_tail", {}],
      ["deploy_status", { id: "anything" }],
    ] as const) {
      const res = await acme.callTool({ name, arguments: args });
      assert.equal(res.isError, true, `${name}: ${resultText(res)}`);
      assert.match(resultText(res), /FORBIDDEN|UNAUTHORIZED/, name);
    }
  });

  it("a tenant cannot act on another tenant's app through any app tool", async () => {
    for (const name of ["get_app", "start_app", "stop_app", "releases", "logs_tail", "deploy"]) {
      const res = await acme.callTool({ name, arguments: { app: "other-web" } });
      assert.equal(res.isError, true, name);
      assert.doesNotMatch(resultText(res), /"tenant":\s*"other"/, `${name} leaked the record`);
    }
  });

  it("an app name cannot smuggle another path into the REST call", async () => {
    for (const app of ["../../v1/supervisors", "other-web/../acme-web", "acme-web?x=1", "%2e%2e"]) {
      const res = await acme.callTool({ name: "get_app", arguments: { app } });
      assert.equal(res.isError, true, `${app}: ${resultText(res)}`);
      assert.doesNotMatch(resultText(res), /"supervisors"/);
    }
  });

  it("the OpenAPI document and /docs hold no secret of this node", async () => {
    const doc = await (await fetch(`${up.node.url}/openapi.json`)).text();
    assert.equal(doc.includes(up.nodeKey), false);
    assert.equal(doc.includes(up.acmeToken), false);
    const page = await (await fetch(`${up.node.url}/docs/`)).text();
    assert.equal(page.includes(up.nodeKey), false);
  });

  it("a tenant token never sees its bearer echoed in tool errors", async () => {
    const res = await acme.callTool({ name: "get_app", arguments: { app: "nope" } });
    assert.equal(res.isError, true);
    assert.equal(resultText(res).includes(up.acmeToken), false);
  });
});
