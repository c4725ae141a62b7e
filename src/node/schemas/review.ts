import { Type } from "@sinclair/typebox";
import { REASON_KINDS } from "../../contract/reasons.js";
import { errorResponses, NullableString, nodeKeyOrTenant, open } from "./common.js";
import { optionalBody } from "./operations.js";

/**
 * Schemas of handler deploys: review of risky contract expansions (plans, grants, policy) and
 * deploy sessions (src/node/deploy-review-routes.ts, deploy-session-routes.ts). The contract
 * itself and the proof row are checked by their format parsers (src/contract/contract-wire.ts,
 * ledger.ts), whose messages name the failing field of the contract or the ledger line.
 */

type Security = { [scheme: string]: string[] }[];
const sessionToken: Security = [{ sessionToken: [] }];

const Id = (what: string) => Type.String({ minLength: 1, description: what });
const IdParams = (what: string) => Type.Object({ id: Id(what) });
const ProjectParams = Type.Object({ name: Id("the project's name") });

export const PlanView = open({
  id: Type.String(),
  projectName: Type.String(),
  region: Type.String(),
  status: Type.String({ description: "pending, approved, rejected, used or expired" }),
  baselineSha: NullableString,
  proposedSha: Type.String(),
  diff: open({ reasons: Type.Array(Type.String()) }),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  baselineContract: Type.Optional(
    Type.Unknown({
      description: "the baseline contract (null on a first deploy); absent on plans from before",
    }),
  ),
  proposedContract: Type.Optional(
    Type.Unknown({ description: "the proposed contract, as the deploy sent it" }),
  ),
});

export const GrantView = open({
  id: Type.String(),
  projectName: Type.String(),
  sourcePlanId: Type.String(),
  createdAt: Type.String(),
  status: Type.String({ description: "active, expired or revoked" }),
  reasons: Type.Array(Type.String()),
});

const Grants = Type.Object({ grants: Type.Array(GrantView) });

const approveShape = 'the body must be {mode?: "once"|"grant", expiresAt?}';
export const ApproveBody = optionalBody(
  Type.Object(
    {
      mode: Type.Optional(
        Type.Union([Type.Literal("once"), Type.Literal("grant")], {
          "x-message": 'mode must be "once" or "grant"',
        }),
      ),
      expiresAt: Type.Optional(
        Type.String({
          maxLength: 64,
          "x-message": "expiresAt must be an ISO 8601 time in the future",
        }),
      ),
    },
    { additionalProperties: true, "x-message": approveShape },
  ),
  approveShape,
);

const riskyShape = `risky must be a list of ${REASON_KINDS.join(", ")}`;
export const PolicyBody = Type.Object(
  {
    risky: Type.Array(
      Type.Union(
        REASON_KINDS.map((k) => Type.Literal(k)),
        { "x-message": riskyShape },
      ),
      { maxItems: 64, "x-message": riskyShape, "x-required": riskyShape },
    ),
  },
  { additionalProperties: true, "x-message": "the body must be a JSON object" },
);

const PolicyQuery = Type.Object(
  { tenant: Type.Optional(Type.String({ maxLength: 64, "x-message": "tenant must be a tenant name" })) },
  { additionalProperties: true },
);
const Policy = Type.Object({ scope: Type.String(), risky: Type.Array(Type.String()) });

const review = (summary: string) => ({ summary, tags: ["review"], security: nodeKeyOrTenant });

export const reviewSchemas = {
  plan: {
    ...review("A handler deploy's review plan: reasons, coverage, state"),
    params: IdParams("the plan's id"),
    response: { 200: PlanView, ...errorResponses },
  },
  approve: {
    ...review(
      'Approve a plan once or as a grant ({"mode": "once"|"grant"}); 409 when decided, 410 when expired',
    ),
    params: IdParams("the plan's id"),
    body: ApproveBody,
    response: { 200: PlanView, ...errorResponses },
  },
  reject: {
    ...review("Reject a plan"),
    params: IdParams("the plan's id"),
    body: optionalBody(
      Type.Object({}, { additionalProperties: true, "x-message": "the body must be a JSON object" }),
      "the body must be a JSON object",
    ),
    response: { 200: PlanView, ...errorResponses },
  },
  grants: { ...review("Your tenant's active grants"), response: { 200: Grants, ...errorResponses } },
  projectGrants: {
    ...review("A project's active grants"),
    params: ProjectParams,
    response: { 200: Grants, ...errorResponses },
  },
  revoke: {
    ...review("Revoke a grant; 409 when already revoked"),
    params: IdParams("the grant's id"),
    response: { 200: Type.Object({ grant: GrantView }), ...errorResponses },
  },
  policy: {
    ...review("Which risky reasons need review, per tenant"),
    querystring: PolicyQuery,
    response: { 200: Policy, ...errorResponses },
  },
  setPolicy: {
    ...review("Set which risky reasons need review (node key: any tenant, with ?tenant=)"),
    querystring: PolicyQuery,
    body: PolicyBody,
    response: { 200: Policy, ...errorResponses },
  },
};

const NAME = "^[a-z0-9][a-z0-9-]{0,62}$";
const nameRule = (field: string) => `${field} must be lowercase letters, digits and dashes (≤ 63)`;
const shaRule = "contractSha256 is not the sha256 of the contract's canonical JSON (RFC 8785)";

export const SessionOpenBody = Type.Object(
  {
    projectName: Type.String({
      pattern: NAME,
      "x-message": nameRule("projectName"),
      "x-required": nameRule("projectName"),
    }),
    region: Type.Optional(Type.String({ pattern: NAME, "x-message": nameRule("region") })),
    contract: Type.Unknown({
      description: "The handler's contract (src/contract/types.ts); its own parser checks every field",
      "x-error-code": "CONTRACT_INVALID",
      "x-required": "contract is required",
    }),
    contractSha256: Type.String({
      "x-error-code": "CONTRACT_SHA_MISMATCH",
      "x-message": shaRule,
      "x-required": shaRule,
    }),
    planId: Type.Optional(Type.String({ maxLength: 64, "x-message": "planId must be a string" })),
  },
  { additionalProperties: true, "x-message": "the body must be a JSON object" },
);

const envRule = "env: names are [A-Za-z_][A-Za-z0-9_]*, values strings";
export const SessionReleaseBody = optionalBody(
  Type.Object(
    {
      env: Type.Optional(
        Type.Record(
          Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$" }),
          Type.String({ "x-message": envRule }),
          {
            maxProperties: 1000,
            "x-message": envRule,
          },
        ),
      ),
    },
    { additionalProperties: true, "x-message": "the body must be a JSON object" },
  ),
  "the body must be a JSON object",
);

export const SessionProofBody = Type.Object(
  {
    row: Type.Unknown({
      description: "One proof row (src/contract/ledger.ts); its own parser checks it",
      "x-error-code": "INVALID_LEDGER_LINE",
      "x-required": "row: not a proof row (it is missing)",
    }),
  },
  { additionalProperties: true, "x-message": "the body must be a JSON object" },
);

const session = (summary: string, security: Security) => ({ summary, tags: ["handler deploys"], security });

export const sessionSchemas = {
  open: {
    ...session(
      "Open a handler deploy: 200 with a short-lived session credential, or 202 plan_required",
      nodeKeyOrTenant,
    ),
    body: SessionOpenBody,
    response: {
      200: open({
        status: Type.Literal("accepted"),
        sessionId: Type.String(),
        projectName: Type.String(),
        region: Type.String(),
        appUuid: Type.String(),
        credential: open({ token: Type.String(), scope: Type.String(), expiresAt: Type.String() }),
      }),
      202: open({
        status: Type.Literal("plan_required"),
        planId: Type.String(),
        reviewUrl: Type.String(),
        proposedSha: Type.String(),
      }),
      ...errorResponses,
    },
  },
  bundle: {
    ...session("Upload the session's bundle (streamed, size-capped)", sessionToken),
    params: IdParams("the session's id"),
    body: {
      content: {
        // Streamed to disk, never parsed: an empty schema checks nothing and documents the type.
        "application/octet-stream": { schema: Type.Unsafe<unknown>({ description: "the handler bundle" }) },
      },
    },
    response: { 200: Type.Object({ state: Type.String(), digest: Type.String() }), ...errorResponses },
  },
  release: {
    ...session("Start the uploaded bundle as the project's new release", sessionToken),
    params: IdParams("the session's id"),
    body: SessionReleaseBody,
    response: { 202: Type.Object({ state: Type.String(), statusUrl: Type.String() }), ...errorResponses },
  },
  status: {
    ...session("A session's state: upload, rollout, readiness", [...sessionToken, ...nodeKeyOrTenant]),
    params: IdParams("the session's id"),
    response: {
      200: open({ sessionId: Type.String(), projectName: Type.String(), state: Type.String() }),
      ...errorResponses,
    },
  },
  proof: {
    ...session("Record the deploy's proof row (contract-derived fields only)", sessionToken),
    params: IdParams("the session's id"),
    body: SessionProofBody,
    response: { 200: Type.Object({ stored: Type.Boolean() }), ...errorResponses },
  },
  proofs: {
    ...session("A project's proof rows, oldest first", nodeKeyOrTenant),
    params: ProjectParams,
    response: { 200: Type.Object({ rows: Type.Array(Type.Unknown()) }), ...errorResponses },
  },
};
