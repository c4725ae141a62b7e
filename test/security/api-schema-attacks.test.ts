/**
 * Attacks on the node routes whose bodies the route schemas now check: a stranger's malformed body
 * (answered 401, never with what is wrong), extra fields trying to change whose data it is, wrong
 * types, huge strings, and prototype-pollution keys. Each refusal is a 4xx in the node's own
 * `{error, code}` shape that changes nothing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { nodeErrorStatus } from "../../src/node/errors.js";
import { type McpNode, startMcpNode } from "../support/mcp-node.js";

interface Answer {
  status: number;
  json: Record<string, unknown>;
}

describe("schema-checked node routes under attack", () => {
  let up: McpNode;
  const send = async (
    method: string,
    path: string,
    token: string | undefined,
    body: string,
  ): Promise<Answer> => {
    const res = await fetch(`${up.node.url}${path}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body,
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const call = async (
    method: string,
    path: string,
    token: string | undefined,
    body?: unknown,
  ): Promise<Answer> => {
    if (method !== "GET") return send(method, path, token, JSON.stringify(body ?? {}));
    const res = await fetch(`${up.node.url}${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  /** A refusal in the node's shape: the status its code maps to, no fastify fields. */
  const refused = (r: Answer, status: number, code: string, what: string) => {
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.code, code, what);
    assert.equal(nodeErrorStatus[code], status, `${what}: ${code} is in the node's error table`);
    assert.equal(r.json.statusCode, undefined, `${what}: fastify's own error body`);
    assert.equal(typeof r.json.error, "string", what);
  };
  const envNames = async (token: string) =>
    (
      (await call("GET", "/api/v1/apps/acme-web/env", token).then((r) => r.json.vars)) as { name: string }[]
    ).map((v) => v.name);

  before(async () => {
    up = await startMcpNode();
    const set = await call("POST", "/api/v1/apps/acme-web/env", up.acmeToken, { set: { KEEP: "1" } });
    assert.equal(set.status, 200, JSON.stringify(set.json));
  });
  after(async () => up?.node.close());

  it("a stranger's malformed body is answered 401, never with what is wrong with it", async () => {
    const routes: [string, string][] = [
      ["POST", "/api/v1/apps/acme-web/env"],
      ["POST", "/v1/deploy/plans/p1/approve"],
      ["PUT", "/v1/deploy/review-policy"],
      ["POST", "/v1/deploy/session"],
      ["POST", "/v1/deploy/sessions/s1/release"],
      ["POST", "/v1/deploy/sessions/s1/proof"],
      ["POST", "/v1/mesh/register"],
      ["POST", "/v1/mesh/deregister"],
      ["POST", "/v1/auth/device/approve"],
      ["POST", "/api/v1/registry/events"],
      ["GET", "/api/v1/registry/gc-roots?keep=nope"],
      ["GET", "/api/v1/apps/acme-web/deploys?limit=nope"],
    ];
    for (const [method, path] of routes) {
      for (const token of [undefined, "not-a-credential"]) {
        const res = await fetch(`${up.node.url}${path}`, {
          method,
          headers: {
            "content-type": "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          ...(method === "GET" ? {} : { body: '{"set": 5, "risky": "all", "peer_id": 7, "events": 1}' }),
        });
        const json = (await res.json()) as { code?: string; error?: string };
        assert.equal(
          res.status,
          401,
          `${method} ${path} (${token ?? "no credential"}): ${JSON.stringify(json)}`,
        );
        assert.doesNotMatch(
          String(json.error),
          /must|set|risky|peer_id|events|limit|keep/,
          `${method} ${path}`,
        );
      }
    }
  });

  it("extra fields cannot move a change to another tenant's data", async () => {
    const env = await call("POST", "/api/v1/apps/acme-web/env", up.acmeToken, {
      set: { ADDED: "v" },
      app: "other-web",
      tenant: "other",
      uuid: "00000000-0000-4000-8000-000000000000",
    });
    assert.equal(env.status, 200, JSON.stringify(env.json));
    assert.equal(env.json.app, "acme-web");
    assert.deepEqual((await envNames(up.acmeToken)).sort(), ["ADDED", "KEEP"]);
    const otherEnv = await call("GET", "/api/v1/apps/other-web/env", up.otherToken);
    assert.deepEqual(otherEnv.json.vars, [], "the other tenant's app got nothing");

    const policy = await call("PUT", "/v1/deploy/review-policy", up.acmeToken, {
      risky: ["env"],
      scope: "other",
      tenant: "other",
    });
    assert.equal(policy.status, 200, JSON.stringify(policy.json));
    assert.equal(policy.json.scope, "acme");
    const others = await call("GET", "/v1/deploy/review-policy", up.otherToken);
    assert.deepEqual(
      others.json.risky,
      ["env", "egress", "route", "effect"],
      "the other tenant's policy is untouched",
    );
  });

  it("wrong types are refused with the route's code, and change nothing", async () => {
    const cases: [string, string, unknown, number, string][] = [
      ["POST", "/api/v1/apps/acme-web/env", { set: { KEEP: 1 } }, 400, "ENV_INVALID"],
      ["POST", "/api/v1/apps/acme-web/env", { unset: "KEEP" }, 400, "ENV_INVALID"],
      ["POST", "/api/v1/apps/acme-web/env", { set: ["KEEP", "x"] }, 400, "ENV_INVALID"],
      ["POST", "/api/v1/apps/acme-web/env", { env: 7, unset: ["KEEP"] }, 400, "ENV_INVALID"],
      ["PUT", "/v1/deploy/review-policy", { risky: "env" }, 400, "BAD_REQUEST"],
      ["PUT", "/v1/deploy/review-policy", { risky: ["env", "everything"] }, 400, "BAD_REQUEST"],
      ["POST", "/v1/deploy/plans/p1/approve", { mode: "forever" }, 400, "BAD_REQUEST"],
      [
        "POST",
        "/v1/deploy/session",
        { projectName: "../x", contract: {}, contractSha256: "0" },
        400,
        "BAD_REQUEST",
      ],
      ["POST", "/v1/deploy/session", { projectName: "web", contractSha256: "0" }, 400, "CONTRACT_INVALID"],
      ["POST", "/v1/deploy/session", { projectName: "web", contract: {} }, 400, "CONTRACT_SHA_MISMATCH"],
      ["POST", "/v1/auth/device/approve", { user_code: 1234, tenant: "acme" }, 400, "BAD_REQUEST"],
      ["POST", "/v1/mesh/deregister", { peer_id: 7 }, 400, "BAD_REQUEST"],
      [
        "POST",
        "/v1/mesh/register",
        { wg_public_key: "short", wg_listen_port: 51820, display_name: "x" },
        400,
        "PEER_INVALID",
      ],
      [
        "POST",
        "/v1/mesh/register",
        { kind: "admin", address: "a", ula: "u", version: "1" },
        400,
        "PEER_INVALID",
      ],
    ];
    for (const [method, path, body, status, code] of cases) {
      const token = path.startsWith("/v1/mesh") ? up.nodeKey : up.acmeToken;
      refused(
        await call(method, path, token, body),
        status,
        code,
        `${method} ${path} ${JSON.stringify(body)}`,
      );
    }
    assert.deepEqual((await envNames(up.acmeToken)).sort(), ["ADDED", "KEEP"]);
    assert.deepEqual((await call("GET", "/v1/deploy/review-policy", up.acmeToken)).json.risky, ["env"]);
    const peers = (await call("GET", "/v1/mesh/peers", up.nodeKey)).json.peers as unknown[];
    assert.deepEqual(peers, [], "no peer joined");
  });

  it("the messages say what the hand parsers said", async () => {
    const set = await call("POST", "/api/v1/apps/acme-web/env", up.acmeToken, { set: ["x"] });
    assert.equal(set.json.error, "set must be an object of NAME: value");
    const risky = await call("PUT", "/v1/deploy/review-policy", up.acmeToken, { risky: ["all"] });
    assert.equal(risky.json.error, "risky must be a list of env, egress, route, effect");
    const project = await call("POST", "/v1/deploy/session", up.acmeToken, {
      projectName: "A",
      contract: {},
      contractSha256: "0",
    });
    assert.equal(project.json.error, "projectName must be lowercase letters, digits and dashes (≤ 63)");
    const deregister = await call("POST", "/v1/mesh/deregister", up.nodeKey, {});
    assert.equal(deregister.json.error, 'deregister needs {"peer_id": "<id>"}');
    const limit = await call("GET", "/api/v1/apps/acme-web/deploys?limit=201", up.acmeToken);
    refused(limit, 400, "BAD_REQUEST", "limit 201");
    assert.equal(limit.json.error, "limit is a whole number from 1 to 200");
  });

  it("huge strings are refused before they reach the store", async () => {
    const big = "x".repeat(200_000);
    refused(
      await call("POST", "/api/v1/apps/acme-web/env", up.acmeToken, { env: big }),
      400,
      "ENV_INVALID",
      "env",
    );
    refused(
      await call("POST", "/v1/deploy/session", up.acmeToken, {
        projectName: big,
        contract: {},
        contractSha256: "",
      }),
      400,
      "BAD_REQUEST",
      "projectName",
    );
    refused(
      await call("POST", "/v1/mesh/register", up.nodeKey, {
        wg_public_key: "A".repeat(43).concat("="),
        wg_listen_port: 51820,
        display_name: big,
      }),
      400,
      "PEER_INVALID",
      "display_name",
    );
    // Over the route's body limit: refused while reading, in the node's shape.
    refused(
      await call("POST", "/v1/auth/device/approve", up.acmeToken, { user_code: big }),
      413,
      "PAYLOAD_TOO_LARGE",
      "user_code",
    );
    assert.deepEqual((await envNames(up.acmeToken)).sort(), ["ADDED", "KEEP"]);
  });

  it("prototype-pollution keys are refused and pollute nothing", async () => {
    const bodies = [
      '{"set": {"A": "1"}, "__proto__": {"polluted": "yes"}}',
      '{"set": {"__proto__": "x"}}',
      '{"set": {"A": "1"}, "constructor": {"prototype": {"polluted": "yes"}}}',
    ];
    for (const body of bodies) {
      const r = await send("POST", "/api/v1/apps/acme-web/env", up.acmeToken, body);
      assert.equal(r.status, 400, `${body}: ${JSON.stringify(r.json)}`);
      assert.ok(r.json.code && nodeErrorStatus[r.json.code as string] === 400, `${body}: ${r.json.code}`);
      assert.equal(r.json.statusCode, undefined);
    }
    const policy = await send(
      "PUT",
      "/v1/deploy/review-policy",
      up.acmeToken,
      '{"risky": ["env"], "__proto__": {"risky": ["route"]}}',
    );
    assert.equal(policy.status, 400);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype is clean");
    assert.deepEqual((await envNames(up.acmeToken)).sort(), ["ADDED", "KEEP"]);
  });
});
