import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { UNDESCRIBED_TAG } from "../src/core/api-docs.js";
import { nodeErrorStatus } from "../src/node/errors.js";
import { SupervisorUnderTest } from "./runtime-plane-support.js";
import { type McpNode, startMcpNode } from "./support/mcp-node.js";

type Operation = {
  tags?: string[];
  summary?: string;
  security?: unknown[];
  requestBody?: { content?: Record<string, { schema?: Record<string, unknown> }> };
  responses?: Record<string, unknown>;
};
type Document = { paths: Record<string, Record<string, Operation>>; components?: Record<string, unknown> };

const METHODS = new Set(["get", "put", "post", "delete", "patch", "head", "options"]);

function operations(doc: Document): [string, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, op]): [string, Operation] => [`${method.toUpperCase()} ${path}`, op]),
  );
}

/**
 * Whether the node key opens the route: it names the scheme, or no credential is needed. The
 * registry events token is the node key on a node started without its own.
 */
function takesNodeKey(op: Operation): boolean {
  return (
    op.security === undefined ||
    op.security.length === 0 ||
    op.security.some((s) =>
      ["nodeKey", "registryEventsToken"].some((k) => Object.keys(s as object).includes(k)),
    )
  );
}

async function validates(doc: unknown): Promise<void> {
  const result = await new Validator().validate(doc as Parameters<Validator["validate"]>[0]);
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2)?.slice(0, 4000));
}

/**
 * Every registered route appears in the document (describeApi gives a route without a schema the
 * `undescribed` tag rather than leaving it out), so the failure names exactly what to fix.
 */
function assertComplete(doc: Document, where: string): void {
  const undescribed = operations(doc)
    .filter(([, op]) => op.tags?.includes(UNDESCRIBED_TAG) || !op.summary)
    .map(([route]) => route);
  assert.deepEqual(
    undescribed,
    [],
    `routes registered without a schema (add one in ${where}): ${undescribed.join(", ")}`,
  );
}

describe("the node's OpenAPI document", () => {
  let up: McpNode;
  let doc: Document;
  before(async () => {
    up = await startMcpNode();
    const res = await fetch(`${up.node.url}/openapi.json`);
    assert.equal(res.status, 200, "served without a credential");
    doc = (await res.json()) as Document;
  });
  after(async () => up?.node.close());

  it("is a valid OpenAPI 3.1 document", async () => {
    assert.match(String((doc as { openapi?: string }).openapi), /^3\.1\./);
    await validates(doc);
  });

  it("describes every route the node registered, with a summary and responses", () => {
    assertComplete(doc, "src/node/schemas/");
    for (const route of ["GET /v1/apps", "GET /v1/topology", "POST /v1/deploy", "POST /mcp", "GET /health"]) {
      assert.ok(
        operations(doc).some(([r]) => r === route),
        `${route} is not in the document`,
      );
    }
  });

  it("declares the node key, tenant token and join token schemes, and routes name theirs", () => {
    const schemes = (doc.components as { securitySchemes?: Record<string, unknown> }).securitySchemes ?? {};
    for (const name of ["nodeKey", "tenantToken", "joinToken"]) assert.ok(schemes[name], `no ${name} scheme`);
    const deploy = doc.paths["/v1/deploy"]?.post;
    assert.deepEqual(deploy?.security, [{ nodeKey: [] }]);
  });

  it("every JSON body schema refuses a violation with the node's error code, not fastify's", async () => {
    for (const [route, op] of operations(doc)) {
      const schema = op.requestBody?.content?.["application/json"]?.schema;
      if (!schema) continue;
      const [method, path] = route.split(" ") as [string, string];
      const url = `${up.node.url}${path.replace(/\{[^}]+\}/g, "acme-web")}`;
      // An array is no body any of these routes takes.
      const res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${up.nodeKey}`, "content-type": "application/json" },
        body: "[1]",
      });
      const body = (await res.json()) as {
        code?: string;
        error?: string;
        error_description?: string;
        statusCode?: number;
      };
      if (!takesNodeKey(op)) {
        // A route of another credential (a deploy session's, a push's hook) asks who is calling
        // before it reads the body.
        assert.equal(res.status, 401, `${route}: ${JSON.stringify(body)}`);
        assert.ok(
          ["SESSION_TOKEN_INVALID", "UNAUTHORIZED"].includes(String(body.code)),
          `${route}: ${body.code}`,
        );
        continue;
      }
      assert.equal(res.status, 400, `${route}: ${JSON.stringify(body)}`);
      if (body.error_description !== undefined) {
        // OAuth's endpoints (RFC 6749 §5.2) answer in OAuth's shape, with the house's code beside it.
        assert.equal(body.code, String(body.error).toUpperCase(), route);
        continue;
      }
      assert.ok(body.code && nodeErrorStatus[body.code] === 400, `${route}: code ${body.code}`);
      assert.equal(body.statusCode, undefined, `${route} answered fastify's own error body`);
      assert.doesNotMatch(String(body.error), /^body\//, `${route}: fastify's message`);
    }
  });

  it("keeps the deploy API's codes and messages for bad deploy bodies", async () => {
    const cases: [unknown, RegExp][] = [
      [{ ref: "main", tenant: "acme" }, /^repo_url is required$/],
      [{ repo_url: "https://example.com/a/b.git", tenant: "acme" }, /^ref is required/],
      [{ repo_url: "https://example.com/a/b.git", ref: "-x", tenant: "acme" }, /ref must be a branch/],
      [
        { repo_url: "https://example.com/a/b.git", ref: "main", tenant: "acme", app_uuid: "nope" },
        /app_uuid must be a UUID/,
      ],
      [
        {
          repo_url: "https://example.com/a/b.git",
          ref: "main",
          tenant: "acme",
          targets: [{ supervisor: "s", runtime: "vm" }],
        },
        /^targets\[0\]\.runtime must be one of/,
      ],
    ];
    for (const [body, message] of cases) {
      const res = await fetch(`${up.node.url}/v1/deploy`, {
        method: "POST",
        headers: { authorization: `Bearer ${up.nodeKey}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as { code: string; error: string };
      assert.equal(res.status, 400);
      assert.equal(json.code, "DEPLOY_REQUEST_INVALID");
      assert.match(json.error, message);
    }
  });

  it("serves the reference page at /docs under a CSP that loads nothing from elsewhere", async () => {
    const res = await fetch(`${up.node.url}/docs/`, { redirect: "follow" });
    assert.equal(res.status, 200);
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /https:|unsafe-inline|unsafe-eval/);
    await res.body?.cancel();
  });
});

describe("the supervisor's OpenAPI document", () => {
  // A builder-tagged supervisor, so the builder's routes are in its document too.
  const sup = new SupervisorUnderTest(["--builder"]);
  let doc: Document;
  before(async () => {
    await sup.start();
    const res = await fetch(`${sup.base}/openapi.json`);
    assert.equal(res.status, 200, "served without the supervisor key");
    doc = (await res.json()) as Document;
  });
  after(async () => sup.cleanup());

  it("is valid and complete, with the supervisor key scheme", async () => {
    await validates(doc);
    assertComplete(doc, "src/supervisor/schemas.ts (or src/builder/schemas.ts)");
    const schemes = (doc.components as { securitySchemes?: Record<string, unknown> }).securitySchemes ?? {};
    assert.ok(schemes.supervisorKey);
    assert.ok(doc.paths["/v1/apps/{uuid}/start"]?.post);
  });

  it("refuses a bad start body with SPEC_INVALID, as before the schema", async () => {
    const res = await sup.call("POST", "/v1/apps/0190a3c4-0000-7000-8000-000000000001/start", {
      refresh: "yes",
    });
    assert.equal(res.status, 400);
    assert.equal(res.json.code, "SPEC_INVALID");
    assert.equal(res.json.error, "refresh must be true or false");
  });

  it("describes the builder's POST /v1/build: its body, both answers and the staged failure", () => {
    const build = doc.paths["/v1/build"]?.post;
    assert.ok(build, "POST /v1/build is not in the document");
    assert.deepEqual(build.security, [{ supervisorKey: [] }]);
    const body = build.requestBody?.content?.["application/json"]?.schema as
      | { required?: string[]; properties?: Record<string, unknown> }
      | undefined;
    assert.deepEqual([...(body?.required ?? [])].sort(), ["app_uuid", "ref", "repo_url", "tenant"]);
    for (const field of [
      "registry",
      "image_repository",
      "stable_tag",
      "context",
      "dockerfile",
      "clone_token",
    ])
      assert.ok(body?.properties?.[field], `the build body documents ${field}`);
    const responses = build.responses as Record<
      string,
      { content?: Record<string, { schema?: { properties?: Record<string, unknown>; required?: string[] } }> }
    >;
    assert.ok(responses["200"]?.content?.["application/json"], "the plain answer");
    assert.ok(responses["200"]?.content?.["application/x-ndjson"], "the streamed answer");
    for (const status of ["4XX", "5XX"]) {
      const failure = responses[status]?.content?.["application/json"]?.schema;
      assert.deepEqual(
        [...(failure?.required ?? [])].sort(),
        ["code", "error", "log_tail", "stage", "user_fault"],
        `${status}: ${JSON.stringify(responses[status])}`,
      );
    }
    assert.ok(doc.paths["/v1/build/{uuid}/progress"]?.get, "the progress route");
  });

  it("answers a bad build body with the builder's failure body, after the supervisor key", async () => {
    const stranger = await fetch(`${sup.base}/v1/build`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "[1]",
    });
    assert.equal(stranger.status, 401);
    await stranger.body?.cancel();
    const res = await sup.call("POST", "/v1/build", {
      repo_url: "https://example.com/a.git",
      ref: "-x",
      tenant: "acme",
      app_uuid: "0190a3c4-0000-7000-8000-000000000001",
      registry: "registry.example:5000",
    });
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.deepEqual(res.json, {
      error: "ref must be a commit sha, branch or tag name",
      code: "BUILD_REQUEST_INVALID",
      stage: "validate",
      user_fault: true,
      log_tail: [],
    });
  });
});
