/**
 * Attacks on the handler-deploy surface: another tenant's plan and grant, a replayed approval, a
 * forged contractSha, a plan used for another contract, session credentials used where they do
 * not belong, an expired session, and env values kept out of the audit chain.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep } from "../../src/core/sleep.js";
import {
  auditActions,
  CONTRACT_NODE_KEY,
  type ContractStack,
  call,
  contractOf,
  startContractStack,
} from "../support/contract-stack.js";

const src = `export default () => new Response(process.env.API_TOKEN_NAME_ONLY ? "set" : "unset");`;

async function open(stack: ContractStack, token: string, project: string, source = src, planId?: string) {
  const { contract, sha } = await contractOf(source);
  return call(stack, "POST", "/v1/deploy/session", token, {
    projectName: project,
    region: "default",
    contract,
    contractSha256: sha,
    ...(planId ? { planId } : {}),
  });
}

async function upload(
  stack: ContractStack,
  sessionId: string,
  token: string | undefined,
  body = "export default () => new Response('x');",
) {
  const headers: Record<string, string> = { "content-type": "application/octet-stream" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${stack.url}/v1/deploy/sessions/${sessionId}/bundle`, {
    method: "PUT",
    headers,
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("handler deploy attacks", () => {
  let stack: ContractStack;
  before(async () => {
    stack = await startContractStack({ fakeSupervisor: true });
  });
  after(async () => {
    await stack?.close();
  });

  test("another tenant's plan and grant are not found, whatever it does with them", async () => {
    const plan = await open(stack, stack.acme, "secret-project");
    assert.equal(plan.status, 202);
    const id = plan.json.planId as string;
    for (const [method, path, body] of [
      ["GET", `/v1/deploy/plans/${id}`, undefined],
      ["POST", `/v1/deploy/plans/${id}/approve`, { mode: "grant" }],
      ["POST", `/v1/deploy/plans/${id}/reject`, {}],
    ] as const) {
      const r = await call(stack, method, path, stack.globex, body);
      assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.json)}`);
    }
    // Using acme's plan id in globex's own deploy finds nothing either.
    assert.equal((await open(stack, stack.globex, "secret-project", src, id)).status, 404);
    const approved = await call(stack, "POST", `/v1/deploy/plans/${id}/approve`, stack.acme, {
      mode: "grant",
    });
    const grantId = approved.json.grantId as string;
    assert.equal((await call(stack, "POST", `/v1/grants/${grantId}/revoke`, stack.globex)).status, 404);
    // acme's grant covers nothing for globex's project of the same name.
    assert.equal((await open(stack, stack.globex, "secret-project")).status, 202);
    // Unauthenticated: 401 before anything.
    assert.equal((await call(stack, "GET", `/v1/deploy/plans/${id}`, undefined)).status, 401);
    assert.ok([401, 403].includes((await open(stack, "not-a-token", "x")).status));
  });

  test("an approval cannot be replayed, decided twice, or carried to another contract", async () => {
    const plan = await open(stack, stack.acme, "replay");
    const id = plan.json.planId as string;
    assert.equal(
      (await call(stack, "POST", `/v1/deploy/plans/${id}/approve`, stack.acme, { mode: "once" })).status,
      200,
    );
    assert.equal(
      (await call(stack, "POST", `/v1/deploy/plans/${id}/approve`, stack.acme, { mode: "grant" })).status,
      409,
    );
    const other = `export default () => fetch("https://exfil.example/");`;
    const swapped = await open(stack, stack.acme, "replay", other, id);
    assert.equal(swapped.status, 409, JSON.stringify(swapped.json));
    assert.equal((await open(stack, stack.acme, "replay", src, id)).status, 200);
    assert.equal((await open(stack, stack.acme, "replay", src, id)).status, 409);
  });

  test("a forged or malformed contract is refused before anything is recorded", async () => {
    const { contract, sha } = await contractOf(src);
    const before = (await auditActions(stack)).length;
    const forged = await call(stack, "POST", "/v1/deploy/session", stack.acme, {
      projectName: "forged",
      region: "default",
      contract: { ...contract, egress: { hosts: [], dynamic: false } },
      contractSha256: "0".repeat(64),
    });
    assert.equal(forged.status, 400);
    assert.equal(forged.json.code, "CONTRACT_SHA_MISMATCH");
    // A contract that hides a host behind the sha of a smaller one.
    const hidden = await call(stack, "POST", "/v1/deploy/session", stack.acme, {
      projectName: "forged",
      region: "default",
      contract: { ...contract, egress: { hosts: ["evil.example"], dynamic: false } },
      contractSha256: sha,
    });
    assert.equal(hidden.json.code, "CONTRACT_SHA_MISMATCH");
    for (const bad of [
      { ...contract, env: { literal: ["BAD NAME"], dynamic: false } },
      { ...contract, version: 2 },
      { ...contract, properties: { ...contract.properties, readOnly: "yes" } },
      "not an object",
    ]) {
      const r = await call(stack, "POST", "/v1/deploy/session", stack.acme, {
        projectName: "forged",
        region: "default",
        contract: bad,
        contractSha256: sha,
      });
      assert.equal(r.status, 400, JSON.stringify(r.json));
    }
    assert.equal(
      (
        await call(stack, "POST", "/v1/deploy/session", stack.acme, {
          projectName: "../x",
          contract,
          contractSha256: sha,
        })
      ).status,
      400,
    );
    assert.equal(
      (
        await call(stack, "POST", "/v1/deploy/session", stack.acme, {
          projectName: "x",
          region: "nowhere",
          contract,
          contractSha256: sha,
        })
      ).status,
      400,
    );
    assert.equal((await auditActions(stack)).length, before, "nothing recorded");
  });

  test("a session credential opens only its own session, and only for upload, release and proof", async () => {
    assert.equal(
      (await call(stack, "PUT", "/v1/deploy/review-policy", stack.acme, { risky: [] })).status,
      200,
    );
    const a = await open(stack, stack.acme, "cred-a");
    const b = await open(stack, stack.acme, "cred-b");
    assert.equal(a.status, 200);
    const tokenA = (a.json.credential as { token: string }).token;
    const tokenB = (b.json.credential as { token: string }).token;
    const idA = a.json.sessionId as string;
    const idB = b.json.sessionId as string;
    assert.equal((await upload(stack, idB, tokenA)).status, 401);
    assert.equal((await upload(stack, idA, undefined)).status, 401);
    assert.equal(
      (await upload(stack, idA, CONTRACT_NODE_KEY)).status,
      401,
      "the node key is not a session credential",
    );
    // One character changed (a token that already ends in A must not be sent back unchanged).
    const offByOne = `${tokenA.slice(0, -1)}${tokenA.endsWith("A") ? "B" : "A"}`;
    assert.equal((await upload(stack, idA, offByOne)).status, 401);
    // The credential is no caller token: it lists nothing and approves nothing.
    assert.ok([401, 403].includes((await call(stack, "GET", "/v1/grants", tokenA)).status));
    const release0 = await call(stack, "POST", `/v1/deploy/sessions/${idA}/release`, tokenA, { env: {} });
    assert.equal(release0.status, 409, "no bundle yet");
    assert.equal((await upload(stack, idA, tokenA)).status, 200);
    assert.equal((await upload(stack, idA, tokenA)).status, 409, "one bundle per session");
    // Another tenant cannot read the session's state.
    assert.equal((await call(stack, "GET", `/v1/deploy/sessions/${idA}`, stack.globex)).status, 404);
    assert.equal((await call(stack, "GET", `/v1/deploy/sessions/${idA}`, tokenA)).status, 200);
    void tokenB;
  });

  test("env values never reach the audit chain; names do", async () => {
    const s = await open(stack, stack.acme, "audited");
    const token = (s.json.credential as { token: string }).token;
    const id = s.json.sessionId as string;
    assert.equal((await upload(stack, id, token)).status, 200);
    const r = await call(stack, "POST", `/v1/deploy/sessions/${id}/release`, token, {
      env: { API_TOKEN_NAME_ONLY: "sk_live_value_that_must_not_leak" },
    });
    assert.equal(r.status, 202);
    const events = await auditActions(stack);
    const release = events.find((e) => e.action === "deploy.session.release");
    assert.ok(release?.text.includes("API_TOKEN_NAME_ONLY"));
    for (const e of events) assert.ok(!e.text.includes("sk_live_value_that_must_not_leak"), e.text);
    for (const e of events) assert.ok(!e.text.includes(token), "no session credential in the chain");
  });
});

describe("an expired session", () => {
  let stack: ContractStack;
  before(async () => {
    stack = await startContractStack({ fakeSupervisor: true, sessionTtlMs: 300 });
  });
  after(async () => {
    await stack?.close();
  });
  test("its credential answers 410", async () => {
    await call(stack, "PUT", "/v1/deploy/review-policy", CONTRACT_NODE_KEY, { risky: [] });
    const s = await open(stack, CONTRACT_NODE_KEY, "short");
    assert.equal(s.status, 200);
    await sleep(500);
    const r = await upload(stack, s.json.sessionId as string, (s.json.credential as { token: string }).token);
    assert.equal(r.status, 410);
    assert.equal(r.json.code, "SESSION_EXPIRED");
  });
});
