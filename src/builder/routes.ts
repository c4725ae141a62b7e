import { PassThrough } from "node:stream";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { schemaFailure } from "../core/api-docs.js";
import { isTabbifyError } from "../core/errors.js";
import { frameworkClientStatus, frameworkErrorCode } from "../core/http-errors.js";
import type { BuildRequest, BuildResult } from "../pipeline/executor.js";
import { type Builder, type BuildFailureDetail, type BuildStage, resolveBuild } from "./builder.js";
import { type BuildAnswer, type BuildFailure, type BuildStreamLine, buildSchemas } from "./schemas.js";

/**
 * The supervisor's build endpoint (SEED-FACTS §2):
 *
 *   POST /v1/build  BuildRequest
 *     Accept: application/json   → 200 {reff, image_ref, digest, commit_sha, log_tail}
 *                                  or 4xx/5xx {error, code, stage, user_fault, log_tail}
 *     Accept: application/x-ndjson → 200 at once, then one JSON object per line:
 *                                  {"type":"log","line"} as output comes,
 *                                  {"type":"stage","stage"} on each stage change (queued,
 *                                  clone, build, push) and as a keep-alive while a step is
 *                                  silent, and last either
 *                                  {"type":"result",reff,image_ref,digest,commit_sha} or
 *                                  {"type":"error",status,error,code,stage,user_fault,log_tail}
 *   GET /v1/build/:uuid/progress → the app's latest build (stage, log tail, result or error); 404 none
 *
 * A request refused before anything ran (bad body, a context leaving the repository) is answered
 * with its status in both modes. A client that hangs up cancels its build. The body is checked by
 * its schema (schemas.ts); a failure of it, or of the body's JSON, is answered in the failure body
 * above (stage `validate`) by the route's own error handler. Mount the routes on an app built
 * with the house's Ajv options (`schemaAjv`), as every Tabbify API is.
 */

export const NDJSON = "application/x-ndjson";

/** The one table from a build error code to an HTTP status. */
export function buildErrorStatus(code: string, userFault: boolean): number {
  switch (code) {
    case "BUILD_REQUEST_INVALID":
      return 400;
    case "BUILD_CONTEXT_INVALID":
      return 422;
    case "BUILD_FAILED":
      return userFault ? 422 : 500;
    case "BUILD_CLONE_FAILED":
    case "BUILD_PUSH_FAILED":
      return 502;
    case "BUILD_CANCELLED":
      return 503;
    default:
      return 500;
  }
}

type FailureBody = BuildFailure & { status: number };

/** A refusal of the request itself (schema, JSON, size), before anything ran. */
function refusal(status: number, code: string, error: string): FailureBody {
  return { status, error, code, stage: "validate", user_fault: true, log_tail: [] };
}

function failureBody(err: unknown): FailureBody {
  if (isTabbifyError(err)) {
    const detail = (
      typeof err.detail === "object" && err.detail !== null ? err.detail : {}
    ) as Partial<BuildFailureDetail>;
    const userFault = detail.user_fault === true;
    return {
      status: buildErrorStatus(err.code, userFault),
      error: err.message,
      code: err.code,
      stage: detail.stage ?? "validate",
      user_fault: userFault,
      log_tail: Array.isArray(detail.log_tail) ? detail.log_tail : [],
    };
  }
  // Not a staged failure: a bug in the builder. The message is ours, never the caller's secrets.
  return {
    status: 500,
    error: `internal build error: ${err instanceof Error ? err.message : String(err)}`,
    code: "INTERNAL",
    stage: "build",
    user_fault: false,
    log_tail: [],
  };
}

const resultBody = (r: BuildResult): Omit<BuildAnswer, "log_tail"> => ({
  reff: r.image_ref,
  image_ref: r.image_ref,
  digest: r.digest,
  commit_sha: r.commit_sha,
});

function wantsStream(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? "";
  return accept.split(",").some((part) => part.trim().toLowerCase().startsWith(NDJSON));
}

/** Aborts when the client goes away before the reply was finished. */
function cancelOnHangUp(reply: FastifyReply): AbortController {
  const controller = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller;
}

export interface BuildRoutesOptions {
  /** How often a silent stream gets a keep-alive line. Default 15 s. */
  keepAliveMs?: number;
}

/** A refusal of the request itself (its schema, its JSON, its size), or undefined for any other error. */
function requestRefusal(err: unknown, req: FastifyRequest): FailureBody | undefined {
  const invalid = schemaFailure(err, req, "BUILD_REQUEST_INVALID");
  if (invalid) return refusal(400, invalid.code, invalid.message);
  const status = frameworkClientStatus(err);
  if (status !== undefined && !isTabbifyError(err)) {
    return refusal(status, frameworkErrorCode(status), (err as Error).message);
  }
  return undefined;
}

export function registerBuildRoutes(
  server: FastifyInstance,
  builder: Builder,
  opts: BuildRoutesOptions = {},
): void {
  const app = server.withTypeProvider<TypeBoxTypeProvider>();
  const keepAliveMs = opts.keepAliveMs ?? 15_000;

  // The app's own handler answers everything else (a caller without the key, a bug).
  const appErrorHandler = server.errorHandler;
  function errorHandler(this: FastifyInstance, err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
    const refused = requestRefusal(err, req);
    if (!refused) return appErrorHandler.call(this, err, req, reply);
    const { status, ...body } = refused;
    return reply.code(status).send(body);
  }

  app.post("/v1/build", { schema: buildSchemas.build, errorHandler }, async (req, reply) => {
    let request: BuildRequest;
    try {
      request = resolveBuild(req.body).request;
      await builder.checkRepo(request);
    } catch (err) {
      const { status, ...body } = failureBody(err);
      return reply.code(status).send(body);
    }

    if (!wantsStream(req)) {
      const cancel = cancelOnHangUp(reply);
      const lines: string[] = [];
      try {
        const result = await builder.build(
          request,
          (line) => {
            lines.push(line);
            if (lines.length > 200) lines.shift();
          },
          cancel.signal,
        );
        return reply.send({ ...resultBody(result), log_tail: lines });
      } catch (err) {
        const { status, ...body } = failureBody(err);
        return reply.code(status).send(body);
      }
    }

    const stream = new PassThrough();
    const cancel = cancelOnHangUp(reply);
    const send = (obj: BuildStreamLine) => {
      if (!stream.writableEnded) stream.write(`${JSON.stringify(obj)}\n`);
    };
    let lastWrite = Date.now();
    const note = (obj: BuildStreamLine) => {
      lastWrite = Date.now();
      send(obj);
    };
    let stage: BuildStage = "queued";
    note({ type: "stage", stage });
    const keepAlive = setInterval(
      () => {
        if (Date.now() - lastWrite >= keepAliveMs) note({ type: "stage", stage });
      },
      Math.min(1000, keepAliveMs),
    );
    builder
      .build(
        request,
        (line) => note({ type: "log", line }),
        cancel.signal,
        (next) => {
          stage = next;
          // The closing line says how it ended; "done"/"failed" would only repeat it.
          if (next !== "done" && next !== "failed") note({ type: "stage", stage });
        },
      )
      .then(
        (result) => note({ type: "result", ...resultBody(result) }),
        (err: unknown) => note({ type: "error", ...failureBody(err) }),
      )
      .finally(() => {
        clearInterval(keepAlive);
        stream.end();
      });
    // The stream's lines are typed by `send` above (BuildStreamLine); the reply's type knows no stream.
    return reply
      .code(200)
      .header("content-type", NDJSON)
      .header("cache-control", "no-store")
      .send(stream as never);
  });

  app.get("/v1/build/:uuid/progress", { schema: buildSchemas.progress }, async (req, reply) => {
    const progress = builder.progress(req.params.uuid);
    if (!progress)
      return reply.code(404).send({ error: `no build of ${req.params.uuid.slice(0, 64)} is known` });
    return progress;
  });
}
