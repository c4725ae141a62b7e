import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import type { Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { v5 as uuidv5 } from "uuid";
import { canonicalJson, contractSha } from "../contract/canonical.js";
import { parseContract } from "../contract/contract-wire.js";
import { contractLabels } from "../contract/labels.js";
import { parseProofRow } from "../contract/ledger.js";
import { riskyReasons } from "../contract/reasons.js";
import type { Contract } from "../contract/types.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { RegistryAccess } from "../pipeline/deps.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AuditLog } from "./audit-log.js";
import { callerFirst } from "./caller-first.js";
import { HandlerReleaser } from "./deploy-handler-release.js";
import { scopeOf } from "./deploy-review-routes.js";
import { type DeployReviewStore, planView } from "./deploy-review-store.js";
import type { NodeSignatures } from "./image-signatures.js";
import type { ReleaseStore } from "./releases-store.js";
import {
  type SessionOpenBody,
  type SessionProofBody,
  type SessionReleaseBody,
  sessionSchemas,
} from "./schemas/review.js";

/**
 * Handler deploys with a contract (the contract arrives before any upload):
 *
 *   POST /v1/deploy/session {projectName, region, contract, contractSha256, planId?}
 *        (node key or tenant token) → 200 a session with a credential for this deploy alone, or
 *        202 {status:"plan_required", planId, reviewUrl, baselineSha, proposedSha, diff, grantCoverage}
 *   PUT  /v1/deploy/sessions/:id/bundle        the handler bundle (the session credential): pushed to
 *        the registry as an OCI artifact, answering its digest
 *   POST /v1/deploy/sessions/:id/proof {row}   the CLI's proof row, kept per project and pushed as a
 *        referrer of the artifact (the credential)
 *   POST /v1/deploy/sessions/:id/release {env} start it on the region's supervisor (the credential)
 *   GET  /v1/deploy/sessions/:id               state: open|uploaded|starting|ready|failed (credential or caller)
 *   GET  /v1/projects/:name/proofs             {rows:[…]} for the dashboard (caller)
 *
 * The session credential is 32 random bytes, kept only as its SHA-256, compared in constant time,
 * good for this session's upload, release and proof only, for 15 minutes.
 */

export interface DeploySessionRoutesOptions {
  reviews: DeployReviewStore;
  callers: CallerResolver;
  audit: AuditLog;
  coordinator: RosterCoordinator;
  dataDir: string;
  supervisorKey: string | undefined;
  registry?: RegistryAccess | undefined;
  releases?: ReleaseStore | undefined;
  signatures?: NodeSignatures | undefined;
  selfUrl: () => string;
  now?: () => Date;
  /** How long a plan waits for review. Default 24 h. */
  planTtlMs?: number;
  /** How long a session's credential lives. Default 15 min. */
  sessionTtlMs?: number;
}

/** Handler apps' UUIDs: v5 under this namespace of `<scope>/<project>`. */
export const HANDLER_APP_NAMESPACE = "6f1c2a8e-5b7d-4e0a-9c3f-2d8b1e4a7c60";
const MAX_BUNDLE = 64 * 1024 * 1024;

export function handlerAppUuid(scope: string, project: string): string {
  return uuidv5(`${scope}/${project}`, HANDLER_APP_NAMESPACE);
}

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

export function registerDeploySessionRoutes(app: FastifyInstance, opts: DeploySessionRoutesOptions): void {
  const now = opts.now ?? (() => new Date());
  const planTtl = opts.planTtlMs ?? 24 * 3600_000;
  const sessionTtl = opts.sessionTtlMs ?? 15 * 60_000;
  const { reviews, callers, audit } = opts;
  const releaser = new HandlerReleaser({
    reviews,
    coordinator: opts.coordinator,
    dataDir: opts.dataDir,
    supervisorKey: opts.supervisorKey,
    registry: opts.registry,
    releases: opts.releases,
    signatures: opts.signatures,
  });
  app.addHook("onClose", () => releaser.drain());

  /** The session a credential opens; any mismatch is the same 401, so ids reveal nothing. */
  const sessionFor = async (id: string, authorization: string | undefined) => {
    const token = bearerToken(authorization);
    const row = token ? await reviews.session(id) : undefined;
    const given = sha256(token ?? "");
    const want = row ? Buffer.from(row.token_sha256, "hex") : sha256(`no session ${randomUUID()}`);
    if (!row || !timingSafeEqual(given, want)) {
      throw new TabbifyError("SESSION_TOKEN_INVALID", "this deploy session's credential is missing or wrong");
    }
    if (Date.parse(row.expires_at) <= now().getTime()) {
      throw new TabbifyError("SESSION_EXPIRED", `deploy session ${row.id} expired at ${row.expires_at}`);
    }
    return row;
  };

  const who = callerFirst((req) => callers.resolve(req.headers.authorization));
  /** The session credential, checked before the body is read. */
  const holder = callerFirst((req) =>
    sessionFor((req.params as { id: string }).id, req.headers.authorization),
  );

  const openRoute = { schema: sessionSchemas.open, onRequest: who.onRequest };
  app.post<{ Body: Static<typeof SessionOpenBody> }>("/v1/deploy/session", openRoute, async (req, reply) => {
    const caller = who.caller(req);
    const scope = scopeOf(caller);
    const b = req.body;
    const project = b.projectName;
    const region = b.region ?? "default";
    const contract = parseContract(b.contract);
    const sha = contractSha(contract);
    if (b.contractSha256 !== sha) {
      throw new TabbifyError(
        "CONTRACT_SHA_MISMATCH",
        "contractSha256 is not the sha256 of the contract's canonical JSON (RFC 8785)",
      );
    }
    // A node without a registry, or an unknown region, fails before anything is recorded.
    releaser.requireRegistry();
    releaser.supervisorFor(region);
    const planId = b.planId;

    const at = now();
    const policy = new Set(await reviews.policy(scope));
    const baseline = await reviews.baseline(scope, project);
    const reasons = riskyReasons(baseline?.contract, contract)
      .filter((r) => policy.has(r.kind))
      .map((r) => r.text);
    const result = await reviews.store.transaction(async (trx) => {
      let usedPlan: string | null = null;
      let grantIds: string[] = [];
      if (planId !== undefined) {
        await reviews.store.serialize(trx, `deploy-plan:${planId}`);
        const plan = planView(await reviews.plan(trx, scope, planId), at);
        if (plan.projectName !== project)
          throw new TabbifyError("PLAN_CONFLICT", `plan ${planId} is for another project`);
        if (plan.status === "expired")
          throw new TabbifyError("PLAN_EXPIRED", `plan ${planId} expired at ${plan.expiresAt}`);
        if (plan.status !== "approved")
          throw new TabbifyError("PLAN_CONFLICT", `plan ${planId} is ${plan.status}, not approved`);
        if (plan.proposedSha !== sha) {
          throw new TabbifyError(
            "PLAN_CONFLICT",
            `plan ${planId} approved contract ${plan.proposedSha.slice(0, 12)}, not this one`,
          );
        }
        await trx.updateTable("deploy_plans").set({ status: "used" }).where("id", "=", planId).execute();
        usedPlan = planId;
      } else if (reasons.length > 0) {
        const live = (await reviews.grants(scope, project, trx)).filter(
          (g) => !g.revoked_at && (g.expires_at === null || Date.parse(g.expires_at) > at.getTime()),
        );
        const covered = new Set<string>();
        for (const g of live) {
          const granted = new Set(JSON.parse(g.reasons) as string[]);
          const hits = reasons.filter((r) => granted.has(r));
          if (hits.length > 0) grantIds.push(g.id);
          for (const r of hits) covered.add(r);
        }
        const uncovered = reasons.filter((r) => !covered.has(r));
        if (uncovered.length > 0) {
          const id = randomUUID();
          await trx
            .insertInto("deploy_plans")
            .values({
              id,
              scope,
              project,
              region,
              baseline_sha: baseline?.sha ?? null,
              proposed_sha: sha,
              reasons: JSON.stringify(reasons),
              covered: JSON.stringify([...covered]),
              status: "pending",
              mode: null,
              grant_id: null,
              created_at: at.toISOString(),
              expires_at: new Date(at.getTime() + planTtl).toISOString(),
              decided_at: null,
              decided_by: null,
              baseline_contract: baseline ? canonicalJson(baseline.contract) : null,
              proposed_contract: canonicalJson(contract),
            })
            .execute();
          await audit.append(trx, {
            actor: caller.actor,
            action: "deploy.plan.create",
            subject: `project:${scope}/${project}`,
            after: { planId: id, proposedSha: sha, baselineSha: baseline?.sha ?? null, reasons },
          });
          return {
            status: 202,
            body: {
              status: "plan_required",
              planId: id,
              // The dashboard's review page (src/dashboard/ui/pages/review.tsx); its API is /v1/deploy/plans/:id.
              reviewUrl: `${opts.selfUrl()}/review/${id}`,
              baselineSha: baseline?.sha ?? null,
              proposedSha: sha,
              diff: { reasons },
              grantCoverage: {
                coveredReasons: reasons.filter((r) => covered.has(r)),
                uncoveredReasons: uncovered,
              },
            },
          };
        }
      } else grantIds = [];
      const id = randomUUID();
      const token = randomBytes(32).toString("base64url");
      const expiresAt = new Date(at.getTime() + sessionTtl).toISOString();
      const appUuid = handlerAppUuid(scope, project);
      await trx
        .insertInto("deploy_sessions")
        .values({
          id,
          scope,
          project,
          region,
          app_uuid: appUuid,
          contract_sha: sha,
          contract: JSON.stringify(contract),
          plan_id: usedPlan,
          grant_ids: JSON.stringify(grantIds),
          token_sha256: sha256(token).toString("hex"),
          state: "open",
          detail: null,
          digest: null,
          created_at: at.toISOString(),
          expires_at: expiresAt,
        })
        .execute();
      await audit.append(trx, {
        actor: caller.actor,
        action: "deploy.session.create",
        subject: `project:${scope}/${project}`,
        after: { sessionId: id, region, contractSha: sha, planId: usedPlan, grantIds, appUuid },
      });
      const base = `${opts.selfUrl()}/v1/deploy/sessions/${id}`;
      return {
        status: 200,
        body: {
          status: "accepted",
          sessionId: id,
          projectName: project,
          region,
          appUuid,
          appUrl: `${opts.selfUrl()}/app/${appUuid}/`,
          baselineSha: baseline?.sha ?? null,
          proposedSha: sha,
          grantIds,
          credential: { token, scope: `push:deploy-session:${id}`, expiresAt },
          uploadUrl: `${base}/bundle`,
          releaseUrl: `${base}/release`,
          statusUrl: base,
        },
      };
    });
    return reply.status(result.status).send(result.body);
  });

  app.register(async (scoped) => {
    scoped.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));
    scoped.put<{ Params: { id: string } }>(
      "/v1/deploy/sessions/:id/bundle",
      { bodyLimit: MAX_BUNDLE, schema: sessionSchemas.bundle, onRequest: holder.onRequest },
      async (req) => {
        const session = holder.caller(req);
        if (session.state !== "open") {
          throw new TabbifyError("SESSION_CONFLICT", `deploy session ${session.id} already has its bundle`);
        }
        const stream = req.body as NodeJS.ReadableStream | undefined;
        if (!stream || typeof (stream as { pipe?: unknown }).pipe !== "function") {
          throw new TabbifyError("UNSUPPORTED_MEDIA_TYPE", "send the bundle as application/octet-stream");
        }
        const digest = await releaser.receiveBundle(session, stream, MAX_BUNDLE);
        await reviews.setSessionState(session.id, "uploaded", null, digest);
        return { state: "uploaded", digest };
      },
    );
  });

  app.post<{ Params: { id: string }; Body: Static<typeof SessionReleaseBody> }>(
    "/v1/deploy/sessions/:id/release",
    { schema: sessionSchemas.release, onRequest: holder.onRequest },
    async (req, reply) => {
      const session = holder.caller(req);
      if (session.state !== "uploaded") {
        throw new TabbifyError(
          "SESSION_CONFLICT",
          session.state === "open"
            ? `deploy session ${session.id} has no bundle yet`
            : `deploy session ${session.id} was already released`,
        );
      }
      const env = req.body?.env ?? {};
      await reviews.setSessionState(session.id, "starting", null);
      await audit.record({
        actor: `deploy-session:${session.id.slice(0, 8)}`,
        action: "deploy.session.release",
        subject: `project:${session.scope}/${session.project}`,
        // Names only: the values may be secrets.
        after: { sessionId: session.id, envNames: Object.keys(env).sort(), digest: session.digest },
      });
      releaser.release(session, env);
      return reply
        .status(202)
        .send({ state: "starting", statusUrl: `${opts.selfUrl()}/v1/deploy/sessions/${session.id}` });
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/deploy/sessions/:id",
    { schema: sessionSchemas.status },
    async (req) => {
      // The CLI polls with the session credential; a person may ask with their own token.
      let session = await reviews.session(req.params.id);
      let caller: Awaited<ReturnType<CallerResolver["resolve"]>> | undefined;
      try {
        caller = await callers.resolve(req.headers.authorization);
      } catch {
        session = await sessionFor(req.params.id, req.headers.authorization);
      }
      if (caller && (!session || session.scope !== scopeOf(caller)))
        throw new TabbifyError("SESSION_NOT_FOUND", `no deploy session ${req.params.id.slice(0, 64)}`);
      if (!session)
        throw new TabbifyError("SESSION_NOT_FOUND", `no deploy session ${req.params.id.slice(0, 64)}`);
      return {
        sessionId: session.id,
        projectName: session.project,
        region: session.region,
        appUuid: session.app_uuid,
        appUrl: `${opts.selfUrl()}/app/${session.app_uuid}/`,
        state: session.state,
        detail: session.detail,
        digest: session.digest,
        contractSha: session.contract_sha,
        labels: contractLabels(JSON.parse(session.contract) as Contract, session.contract_sha),
      };
    },
  );

  app.post<{ Params: { id: string }; Body: Static<typeof SessionProofBody> }>(
    "/v1/deploy/sessions/:id/proof",
    { schema: sessionSchemas.proof, onRequest: holder.onRequest },
    async (req) => {
      const session = holder.caller(req);
      const row = parseProofRow(JSON.stringify(req.body.row ?? null), "row");
      if (row.facts.contractSha !== session.contract_sha) {
        throw new TabbifyError(
          "CONTRACT_SHA_MISMATCH",
          "the proof row's contractSha is not this session's contract",
        );
      }
      // Pushed first: a row the node keeps is always listed by the registry's referrers API.
      const referrer = await releaser.pushProof(session, row);
      await reviews.store.db
        .insertInto("proof_rows")
        .values({
          session_id: session.id,
          scope: session.scope,
          project: session.project,
          ts: row.ts,
          row: JSON.stringify(row),
        })
        .onConflict((oc) => oc.column("session_id").doNothing())
        .execute();
      return { stored: true, referrer };
    },
  );

  app.get<{ Params: { name: string } }>(
    "/v1/projects/:name/proofs",
    { schema: sessionSchemas.proofs, onRequest: who.onRequest },
    async (req) => {
      return { rows: await reviews.proofs(scopeOf(who.caller(req)), req.params.name) };
    },
  );
}
