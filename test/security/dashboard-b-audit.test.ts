import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type McpNode, startMcpNode } from "../support/mcp-node.js";

/**
 * Attacks on the audit views the dashboard reads: a tenant's token (or its dashboard session)
 * gets no rows of the chain, which holds every tenant's events; filters are values, not SQL.
 */
describe("attacks: the dashboard's audit views", () => {
  let up: McpNode;
  before(async () => {
    up = await startMcpNode();
  });
  after(async () => {
    await up?.node.close();
  });

  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    fetch(`${up.node.url}${path}`, {
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    });

  it("refuses a tenant's token and no credential, naming no event", async () => {
    for (const path of ["/v1/audit/events", "/v1/audit/events?app=other-web", "/v1/audit/verify"]) {
      for (const [token, status] of [
        [up.acmeToken, 403],
        [undefined, 401],
        ["not-a-token", 401],
      ] as const) {
        const res = await get(path, token);
        const text = await res.text();
        assert.equal(res.status, status, `${path}: ${text}`);
        assert.ok(!text.includes("event_hash") && !text.includes("other-web"), `${path}: no rows`);
      }
    }
  });

  it("refuses a tenant's dashboard session the same way", async () => {
    const login = await fetch(`${up.node.url}/api/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: up.acmeToken }),
    });
    const answer = await login.text();
    assert.equal(login.status, 200, answer);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
    assert.match(cookie, /^tabbify_session=/);
    const { csrf_token } = JSON.parse(answer) as { csrf_token: string };
    const res = await get("/v1/audit/events", undefined, { cookie, "x-csrf-token": csrf_token });
    assert.equal(res.status, 403, await res.text());
  });

  it("treats filters as values: a LIKE or SQL fragment matches nothing and changes nothing", async () => {
    const before = (await (await get("/v1/audit/verify", up.nodeKey)).json()) as { count: number };
    for (const query of ["app=%25", "app=x'%20OR%201=1--", "actor=x'%20OR%20'1'='1", "action=%25"]) {
      const res = await get(`/v1/audit/events?${query}`, up.nodeKey);
      const body = (await res.json()) as { events?: unknown[]; code?: string };
      if (res.status === 200) assert.deepEqual(body.events, [], `${query} matches nothing`);
      else assert.equal(res.status, 400, `${query}: ${JSON.stringify(body)}`);
    }
    for (const query of ["limit=100000", "limit=201", "before=-1", "before=1e3"]) {
      const res = await get(`/v1/audit/events?${query}`, up.nodeKey);
      assert.equal(res.status, 400, `${query}: ${await res.text()}`);
    }
    const after = (await (await get("/v1/audit/verify", up.nodeKey)).json()) as {
      count: number;
      ok: boolean;
    };
    assert.equal(after.count, before.count);
    assert.equal(after.ok, true);
  });

  it("answers the node key with the chain, newest first, and the node's verdict", async () => {
    const res = await get("/v1/audit/events?limit=2", up.nodeKey);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { events: { seq: number; event_hash: string }[] };
    assert.ok(body.events.length > 0, "seeding the apps was audited");
    const seqs = body.events.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => b - a),
    );
  });
});
