/**
 * The review API of handler deploys against a real node: the session's 200 and 202, approve
 * once, approve with a grant and a later covered deploy, reject, revoke, an expired plan, the
 * per-tenant policy, and an audit event for each decision.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep } from "../src/core/sleep.js";
import {
  auditActions,
  CONTRACT_NODE_KEY,
  type ContractStack,
  call,
  contractOf,
  startContractStack,
} from "./support/contract-stack.js";

const v1 = `export default (req: Request) => new Response(process.env.GREETING ?? "hi");`;
const v2 = `export default async (req: Request) => { await fetch("https://api.example.com/x"); return new Response(process.env.GREETING); };`;
const v3 = `export default async (req: Request) => { await fetch("https://api.example.com/x"); return new Response(String(process.env.GREETING) + process.env.COLOR); };`;

async function session(
  stack: ContractStack,
  token: string,
  project: string,
  source: string,
  planId?: string,
) {
  const { contract, sha } = await contractOf(source);
  return call(stack, "POST", "/v1/deploy/session", token, {
    projectName: project,
    region: "default",
    contract,
    contractSha256: sha,
    ...(planId ? { planId } : {}),
  });
}

describe("handler deploy review", () => {
  let stack: ContractStack;
  before(async () => {
    stack = await startContractStack({ fakeSupervisor: true });
  });
  after(async () => {
    await stack?.close();
  });

  test("a first deploy needs review: 202 with reasons; approve once; the plan's deploy gets 200 once", async () => {
    const first = await session(stack, stack.acme, "shop", v1);
    assert.equal(first.status, 202, JSON.stringify(first.json));
    assert.equal(first.json.status, "plan_required");
    const planId = first.json.planId as string;
    assert.deepEqual((first.json.diff as { reasons: string[] }).reasons, [
      "new env read: GREETING",
      "new route: /*",
    ]);
    assert.deepEqual(first.json.grantCoverage, {
      coveredReasons: [],
      uncoveredReasons: ["new env read: GREETING", "new route: /*"],
    });
    assert.equal(first.json.baselineSha, null);
    assert.match(first.json.reviewUrl as string, new RegExp(`/review/${planId}$`));

    const shown = await call(stack, "GET", `/v1/deploy/plans/${planId}`, stack.acme);
    assert.equal(shown.json.status, "pending");
    const approved = await call(stack, "POST", `/v1/deploy/plans/${planId}/approve`, stack.acme, {
      mode: "once",
    });
    assert.equal(approved.status, 200, JSON.stringify(approved.json));
    assert.equal(approved.json.status, "approved");

    const ok = await session(stack, stack.acme, "shop", v1, planId);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    const credential = ok.json.credential as { token: string; scope: string; expiresAt: string };
    assert.match(credential.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(credential.scope, `push:deploy-session:${ok.json.sessionId}`);
    assert.ok(Date.parse(credential.expiresAt) - Date.now() <= 15 * 60_000 + 5_000, "short-lived");
    // The approval was for one deploy.
    const again = await session(stack, stack.acme, "shop", v1, planId);
    assert.equal(again.status, 409, JSON.stringify(again.json));
  });

  test("approve with a grant: later deploys whose reasons are covered proceed; revoke ends that", async () => {
    const first = await session(stack, stack.acme, "grants-demo", v2);
    assert.equal(first.status, 202);
    const planId = first.json.planId as string;
    const approved = await call(stack, "POST", `/v1/deploy/plans/${planId}/approve`, stack.acme, {
      mode: "grant",
    });
    assert.equal(approved.json.mode, "grant");
    const grantId = approved.json.grantId as string;
    assert.ok(grantId);
    // No plan id: the grant covers every reason, so the deploy proceeds and names the grant.
    const covered = await session(stack, stack.acme, "grants-demo", v2);
    assert.equal(covered.status, 200, JSON.stringify(covered.json));
    assert.deepEqual(covered.json.grantIds, [grantId]);
    // A new reason is not covered: 202 says which are covered and which are not.
    const partial = await session(stack, stack.acme, "grants-demo", v3);
    assert.equal(partial.status, 202);
    assert.deepEqual(partial.json.grantCoverage, {
      coveredReasons: ["new env read: GREETING", "new egress host: api.example.com", "new route: /*"],
      uncoveredReasons: ["new env read: COLOR"],
    });
    const listed = await call(stack, "GET", "/v1/projects/grants-demo/grants", stack.acme);
    const grants = listed.json.grants as {
      id: string;
      status: string;
      reasons: string[];
      sourcePlanId: string;
    }[];
    assert.equal(grants.length, 1);
    assert.equal(grants[0]!.status, "active");
    assert.equal(grants[0]!.sourcePlanId, planId);
    assert.equal(((await call(stack, "GET", "/v1/grants", stack.acme)).json.grants as unknown[]).length, 1);
    assert.equal(((await call(stack, "GET", "/v1/grants", stack.globex)).json.grants as unknown[]).length, 0);

    const revoked = await call(stack, "POST", `/v1/grants/${grantId}/revoke`, stack.acme);
    assert.equal(revoked.status, 200);
    assert.equal((revoked.json.grant as { status: string }).status, "revoked");
    assert.equal((await call(stack, "POST", `/v1/grants/${grantId}/revoke`, stack.acme)).status, 409);
    assert.equal((await session(stack, stack.acme, "grants-demo", v2)).status, 202);
  });

  test("reject: the plan cannot be used or decided again", async () => {
    const first = await session(stack, stack.acme, "rejected", v1);
    const planId = first.json.planId as string;
    const rejected = await call(stack, "POST", `/v1/deploy/plans/${planId}/reject`, stack.acme, {});
    assert.equal(rejected.json.status, "rejected");
    assert.equal((await session(stack, stack.acme, "rejected", v1, planId)).status, 409);
    assert.equal(
      (await call(stack, "POST", `/v1/deploy/plans/${planId}/approve`, stack.acme, { mode: "once" })).status,
      409,
    );
    assert.equal(
      (await call(stack, "GET", "/v1/deploy/plans/00000000-0000-4000-8000-000000000000", stack.acme)).status,
      404,
    );
  });

  test("the review policy is per tenant: with no risky kinds a deploy proceeds at once", async () => {
    const set = await call(stack, "PUT", "/v1/deploy/review-policy", stack.globex, { risky: ["egress"] });
    assert.deepEqual(set.json, { scope: "globex", risky: ["egress"] });
    assert.equal((await session(stack, stack.globex, "quiet", v1)).status, 200);
    assert.equal((await session(stack, stack.globex, "quiet", v2)).status, 202);
    // acme keeps the default: all four kinds.
    assert.deepEqual((await call(stack, "GET", "/v1/deploy/review-policy", stack.acme)).json.risky, [
      "env",
      "egress",
      "route",
      "effect",
    ]);
    assert.equal(
      (await call(stack, "PUT", "/v1/deploy/review-policy?tenant=acme", stack.globex, { risky: [] })).status,
      403,
    );
  });

  test("every approval, rejection, grant and revocation is an audit event", async () => {
    const actions = (await auditActions(stack)).map((e) => e.action);
    for (const a of [
      "deploy.plan.create",
      "deploy.plan.approve",
      "deploy.plan.reject",
      "deploy.grant.create",
      "deploy.grant.revoke",
      "deploy.session.create",
      "deploy.review_policy.set",
    ]) {
      assert.ok(actions.includes(a), `${a} in ${actions.join(",")}`);
    }
  });
});

describe("an expired plan", () => {
  let stack: ContractStack;
  before(async () => {
    stack = await startContractStack({ fakeSupervisor: true, planTtlMs: 400 });
  });
  after(async () => {
    await stack?.close();
  });
  test("answers 410 to approval and to a deploy naming it", async () => {
    const first = await session(stack, CONTRACT_NODE_KEY, "late", v1);
    assert.equal(first.status, 202);
    const planId = first.json.planId as string;
    await sleep(600);
    assert.equal(
      (await call(stack, "GET", `/v1/deploy/plans/${planId}`, CONTRACT_NODE_KEY)).json.status,
      "expired",
    );
    const approve = await call(stack, "POST", `/v1/deploy/plans/${planId}/approve`, CONTRACT_NODE_KEY, {
      mode: "once",
    });
    assert.equal(approve.status, 410);
    assert.equal(approve.json.code, "PLAN_EXPIRED");
    assert.equal((await session(stack, CONTRACT_NODE_KEY, "late", v1, planId)).status, 410);
  });
});
