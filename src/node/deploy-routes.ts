import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { checkGitRef } from "../core/git-ref.js";
import { acceptJsonWhateverContentType } from "../core/json-body.js";
import type { Logger } from "../core/log.js";
import { checkRepoUrl, parseHttpRepoUrl, type RepoUrlPolicy } from "../core/repo-url.js";
import { isSshRepoUrl } from "../core/ssh-remote.js";
import { type DeployEvent, type DeployRecord, followDeploy, isActive } from "../pipeline/executor.js";
import { refuseSshRemote } from "../pipeline/git-credentials.js";
import { checkGitUrl, isLocalRepoUrl } from "../pipeline/git-remote.js";
import type { DeployRequest, RequestedTarget } from "../pipeline/plan.js";
import {
  branchIgnoreReason,
  currentDeployOf,
  deliveryHeaders,
  forgejoSignatureHeader,
  parsePushEvent,
  verifyForgejoSignature,
  verifyGithubSignature,
  type WebhookSource,
} from "../pipeline/webhooks.js";
import { nodeKeyActorOf } from "./apps-identity.js";
import type { DeployObserver } from "./audit-deploys.js";
import type { NodeKeyCheck } from "./auth.js";
import type { DeliveryNote } from "./deploy-store.js";
import { NodePipeline } from "./pipeline.js";
import { applyWaitQuery } from "./releases-lock.js";
import { bodyDigest } from "./replay-guard.js";
import {
  type DeployAccepted,
  type DeployBody,
  type DeployStatus,
  deliveriesSchema,
  deployEventsSchema,
  deploySchema,
  deployStatusSchema,
  deploysSchema,
  webhookSchema,
} from "./schemas/deploy.js";

/**
 * The deploy API and the webhook intake:
 *
 *   POST /v1/webhooks/github|forgejo   no bearer: the HMAC over the raw body is the auth; a body
 *                                      accepted before is a duplicate whatever its delivery id
 *   POST /webhook/forgejo              alias of /v1/webhooks/forgejo (kua-deploy's path)
 *   GET  /v1/webhooks/deliveries       bearer: what became of recent deliveries (ignore reasons)
 *   POST /v1/deploy                    bearer: {repo_url, ref, tenant, app_uuid?, builder?, targets?}
 *   GET  /v1/deploy/:id/status         bearer: 202 while running, 200 when done
 *   GET  /v1/deploy/:id/events         bearer: text/event-stream of the deploy's events
 *   GET  /v1/deploys                   bearer: recent deploys, newest first
 */

/** How many recent deploys are searched for the one an app currently runs. */
const CURRENT_DEPLOY_WINDOW = 1000;

/** GitHub caps deliveries at 25 MB; anything larger is not one of theirs. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;

export interface WebhookSecrets {
  github?: string;
  forgejo?: string;
}

function invalid(message: string): TabbifyError {
  return new TabbifyError("DEPLOY_REQUEST_INVALID", message);
}

/**
 * A `POST /v1/deploy` body (its shape already checked by DeployBody) as a deploy request: what a
 * schema cannot say (the URL parses, carries no credentials) is checked here.
 */
export function toDeployRequest(body: Static<typeof DeployBody>): DeployRequest {
  const { repo_url: repoUrl, ref, tenant } = body;
  const parsedUrl = parseHttpRepoUrl(repoUrl);
  if ("problem" in parsedUrl) throw invalid(parsedUrl.problem);
  if (parsedUrl.url.username !== "" || parsedUrl.url.password !== "") {
    throw invalid("repo_url must not carry credentials (configure a GitHub App instead)");
  }
  const request: DeployRequest = { trigger: "api", repoUrl, ref, tenant };
  if (/^[0-9a-f]{40}$/i.test(ref)) request.sha = ref.toLowerCase();
  if (body.app_uuid) request.appUuid = parseAppUuid(body.app_uuid);
  if (body.builder) request.builder = body.builder;
  if (body.targets) {
    request.targets = body.targets.map(
      (t): RequestedTarget =>
        t.runtime ? { supervisor: t.supervisor, runtime: t.runtime } : { supervisor: t.supervisor },
    );
  }
  return request;
}

/** The status body: what `GET /v1/deploy/<id>/status` answers. */
export function statusBody(record: DeployRecord): Static<typeof DeployStatus> {
  const done = !isActive(record.status);
  const lastStep = [...record.events].reverse().find((e) => e.step !== "deploy");
  const body: Static<typeof DeployStatus> = {
    id: record.id,
    state: record.status,
    done,
    success: record.status === "succeeded" && record.results.every((r) => r.success),
    created_at: record.created_at,
    trigger: record.request.trigger,
    repo_url: record.request.repoUrl,
    ref: record.request.ref,
    tenant: record.request.tenant,
    results: record.results,
  };
  if (!done && lastStep) body.step = lastStep.step;
  if (record.finished_at) body.finished_at = record.finished_at;
  if (record.app_uuid) body.app_uuid = record.app_uuid;
  if (record.image_ref) body.image_ref = record.image_ref;
  if (record.digest) body.digest = record.digest;
  if (record.request.deliveryId) body.delivery_id = record.request.deliveryId;
  if (record.error) body.error = record.error;
  return body;
}

function sseFrame(event: DeployEvent): string {
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** Where a reconnecting client left off: `Last-Event-ID`, else `?after=`. */
function afterSeq(req: FastifyRequest): number {
  const header = req.headers["last-event-id"];
  const query = (req.query as { after?: string } | undefined)?.after;
  const raw = (Array.isArray(header) ? header[0] : header) ?? query ?? "0";
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new TabbifyError("BAD_REQUEST", "after must be an event seq");
  return n;
}

export async function streamEvents(
  pipeline: NodePipeline,
  id: string,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  // Throws DEPLOY_NOT_FOUND before any byte is written, so the caller gets a normal 404.
  if (!(await pipeline.store.get(id))) {
    throw new TabbifyError("DEPLOY_NOT_FOUND", `deploy ${id.slice(0, 64)} is unknown`);
  }
  const after = afterSeq(req);
  const abort = new AbortController();
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  res.on("close", () => abort.abort());
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
  try {
    for await (const event of followDeploy(pipeline.store, id, after, abort.signal)) {
      res.write(sseFrame(event));
    }
  } finally {
    clearInterval(keepAlive);
    res.end();
  }
}

export interface DeployRoutesOptions {
  pipeline: NodePipeline;
  /** Told of every accepted deploy, with the actor it was accepted from (the audit chain). */
  observer?: DeployObserver;
  keyCheck: NodeKeyCheck;
  secrets: WebhookSecrets;
  /** Where a `POST /v1/deploy` repo_url may point (SSRF guard). */
  repoPolicy: RepoUrlPolicy;
  /**
   * `--allow-local-repos`: how a `file://` or absolute-path repo_url becomes a clonable one (the
   * node's own push repository) and a sha. Absent ⇒ local repositories are refused.
   */
  localRepos?: (source: string, ref: string) => Promise<{ repoUrl: string; sha: string }>;
  /**
   * How an ssh repo_url becomes a clonable one: the node fetches it with its own key into a push
   * repository. Absent ⇒ ssh remotes are refused with SSH_REMOTE_UNSUPPORTED.
   */
  sshRepos?: (source: string, ref: string) => Promise<{ repoUrl: string; sha: string }>;
  logger: Logger;
}

export function registerDeployRoutes(app: FastifyInstance, opts: DeployRoutesOptions): void {
  const { pipeline, keyCheck, secrets, repoPolicy, logger, observer } = opts;

  app.register(async (hooks) => {
    // Signatures are over the exact bytes sent, so the body stays a Buffer until verified.
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser(
      "*",
      { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT },
      (_req, body, done) => done(null, body),
    );
    const intake = (source: WebhookSource) => async (req: FastifyRequest, reply: FastifyReply) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      if (source === "github") {
        const sig = req.headers["x-hub-signature-256"];
        verifyGithubSignature(secrets.github, raw, Array.isArray(sig) ? sig[0] : sig);
      } else {
        verifyForgejoSignature(secrets.forgejo, raw, forgejoSignatureHeader(req.headers));
      }
      const { eventName, deliveryId } = deliveryHeaders(source, req.headers);
      let payload: unknown;
      try {
        payload = JSON.parse(jsonText(raw, req.headers["content-type"]));
      } catch {
        throw new TabbifyError("WEBHOOK_PAYLOAD_INVALID", "push payload invalid: the body is not JSON");
      }
      const event = parsePushEvent(source, eventName, deliveryId, payload);
      if (event.kind === "ping")
        return reply.code(200).send({ status: "pong", delivery_id: event.deliveryId });

      const receivedAt = new Date().toISOString();
      // The delivery id is not signed: a captured body replayed under a fresh id is caught by
      // its digest. Remembered before anything else happens, so two racing copies deploy once.
      if (!(await pipeline.replay.remember(bodyDigest(raw)))) {
        logger.warn("webhook body replayed", { delivery_id: event.deliveryId });
        const body: Record<string, unknown> = {
          status: "duplicate",
          delivery_id: event.deliveryId,
          reason: "this signed body was accepted before",
        };
        const earlier = (await pipeline.deliveries.noteOf(event.deliveryId))?.deploy_id;
        if (earlier) body.id = earlier;
        return reply.code(200).send(body);
      }
      if (!(await pipeline.ledger.claim(event.deliveryId))) {
        const earlier = await pipeline.deliveries.noteOf(event.deliveryId);
        const body: Record<string, unknown> = { status: "duplicate", delivery_id: event.deliveryId };
        if (earlier?.deploy_id) body.id = earlier.deploy_id;
        return reply.code(200).send(body);
      }
      const note: DeliveryNote = {
        delivery_id: event.deliveryId,
        source,
        received_at: receivedAt,
        outcome: "ignored",
      };
      if (eventName) note.event = eventName;
      if (event.kind === "ignored") {
        note.reason = event.reason;
        if (event.fullName) note.repository = event.fullName;
        if (event.ref) note.ref = event.ref;
        await pipeline.deliveries.note(note);
        logger.info("webhook ignored", { delivery_id: event.deliveryId, reason: event.reason });
        return reply
          .code(200)
          .send({ status: "ignored", delivery_id: event.deliveryId, reason: event.reason });
      }
      note.repository = event.fullName;
      note.ref = event.ref;
      // The deploy branch is the app's own choice (`[app].branch` at the pushed commit), so it is
      // read before answering; GitHub's 10 s leave room for one contents call.
      const reason = branchIgnoreReason(event, await pipeline.configuredBranch(source, event));
      if (reason !== undefined) {
        note.reason = reason;
        await pipeline.deliveries.note(note);
        logger.info("webhook ignored", { delivery_id: event.deliveryId, reason });
        return reply.code(200).send({ status: "ignored", delivery_id: event.deliveryId, reason });
      }
      // Awaited so the lookup holds whether the deploy store lists synchronously or not.
      const recent = await pipeline.store.list(CURRENT_DEPLOY_WINDOW);
      const current = currentDeployOf(recent, event.repoUrl, event.sha);
      if (current !== undefined) {
        note.reason = `commit ${event.sha} is already deployed (deploy ${current.id})`;
        await pipeline.deliveries.note(note);
        logger.info("webhook ignored", { delivery_id: event.deliveryId, reason: note.reason });
        return reply.code(200).send({
          status: "already_deployed",
          delivery_id: event.deliveryId,
          id: current.id,
          sha: event.sha,
          reason: note.reason,
        });
      }
      const request = NodePipeline.pushRequest(event);
      const id = await pipeline.start(source, request);
      await observer?.accepted(`${source}:${event.pusher}`, id, request);
      note.outcome = "deployed";
      note.deploy_id = id;
      await pipeline.deliveries.note(note);
      logger.info("webhook accepted", { delivery_id: event.deliveryId, deploy_id: id, repo: event.fullName });
      return reply.code(202).send(acceptedBody(id, event.deliveryId));
    };
    hooks.post(
      "/v1/webhooks/github",
      { bodyLimit: WEBHOOK_BODY_LIMIT, schema: webhookSchema },
      intake("github"),
    );
    hooks.post(
      "/v1/webhooks/forgejo",
      { bodyLimit: WEBHOOK_BODY_LIMIT, schema: webhookSchema },
      intake("forgejo"),
    );
    // kua-deploy's path for the same hook, so existing Forgejo webhook settings keep working.
    hooks.post(
      "/webhook/forgejo",
      { bodyLimit: WEBHOOK_BODY_LIMIT, schema: webhookSchema },
      intake("forgejo"),
    );
  });

  app.register(async (scope) => {
    const authed = scope.withTypeProvider<TypeBoxTypeProvider>();
    authed.addHook("onRequest", async (req) => {
      keyCheck.assert(req.headers.authorization);
    });
    // `curl -d '{…}'` sends a form content type: the body is JSON whatever the header says.
    acceptJsonWhateverContentType(authed);

    authed.post("/v1/deploy", { schema: deploySchema }, async (req, reply) => {
      const raw = req.body;
      const ssh = typeof raw.repo_url === "string" && isSshRepoUrl(raw.repo_url) ? opts.sshRepos : undefined;
      if (isLocalRepoUrl(raw.repo_url) || ssh !== undefined) {
        // An ssh remote is checked by its importer (parseSshRemote, then the address policy).
        const problem =
          ssh === undefined
            ? checkGitUrl(raw.repo_url, { allowLocal: opts.localRepos !== undefined })
            : undefined;
        if (problem !== undefined) throw new TabbifyError("REPO_URL_REFUSED", problem);
        const refProblem = checkGitRef(raw.ref);
        if (refProblem !== undefined) throw invalid(refProblem);
        const local = await (ssh ?? opts.localRepos!)(raw.repo_url, raw.ref);
        const request = toDeployRequest({ ...raw, repo_url: local.repoUrl, ref: local.sha });
        const id = await pipeline.start("node", request);
        await observer?.accepted(nodeKeyActorOf(req.headers.authorization), id, request);
        return reply.code(202).send(acceptedBody(id));
      }
      if (typeof raw.repo_url === "string") refuseSshRemote(raw.repo_url);
      const request = toDeployRequest(raw);
      await applyWaitQuery(request, req.query, pipeline.lock);
      const target = await checkRepoUrl(request.repoUrl, repoPolicy);
      if ("problem" in target) throw new TabbifyError("REPO_URL_REFUSED", target.problem);
      const id = await pipeline.start(pipeline.forgeOf(request.repoUrl), request);
      await observer?.accepted(nodeKeyActorOf(req.headers.authorization), id, request);
      return reply.code(202).send(acceptedBody(id));
    });

    authed.get("/v1/deploy/:id/status", { schema: deployStatusSchema }, async (req, reply) => {
      const record = await pipeline.store.get(req.params.id);
      if (!record)
        throw new TabbifyError("DEPLOY_NOT_FOUND", `deploy ${req.params.id.slice(0, 64)} is unknown`);
      return reply.code(isActive(record.status) ? 202 : 200).send(statusBody(record));
    });

    authed.get("/v1/deploy/:id/events", { schema: deployEventsSchema }, async (req, reply) =>
      streamEvents(pipeline, req.params.id, req, reply),
    );

    authed.get("/v1/deploys", { schema: deploysSchema }, async () => ({
      deploys: (await pipeline.store.list()).map((r) => statusBody(r)),
    }));

    authed.get("/v1/webhooks/deliveries", { schema: deliveriesSchema }, async () => ({
      deliveries: await pipeline.deliveries.recent(),
    }));
  });
}

function acceptedBody(id: string, deliveryId?: string): Static<typeof DeployAccepted> {
  const body: Static<typeof DeployAccepted> = {
    id,
    status: "accepted",
    status_url: `/v1/deploy/${id}/status`,
    events_url: `/v1/deploy/${id}/events`,
  };
  if (deliveryId !== undefined) body.delivery_id = deliveryId;
  return body;
}

/**
 * GitHub sends JSON as `application/json` or, when the hook is set up that way, as a form with the
 * JSON in `payload`; the signature covers the bytes as sent either way.
 */
function jsonText(raw: Buffer, contentType: string | undefined): string {
  if ((contentType ?? "").toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    const payload = new URLSearchParams(raw.toString("utf8")).get("payload");
    if (payload === null) throw new Error("no payload field");
    return payload;
  }
  return raw.toString("utf8");
}
