import { Type } from "@sinclair/typebox";
import { deployRuntimes } from "../../pipeline/tabbify-toml.js";
import { AnyObject, errorResponses, nodeKey, nodeKeyOrTenant, open, Uuid } from "./common.js";

/** Schemas of the deploy API and the webhook intake (src/node/deploy-routes.ts). */

const nonEmpty = (name: string) =>
  Type.String({ minLength: 1, "x-message": `${name} must be a non-empty string` });

export const DeployTarget = Type.Object(
  {
    supervisor: Type.String({ minLength: 1, "x-message": "{field} must be a supervisor name" }),
    runtime: Type.Optional(
      Type.Union([...deployRuntimes.map((r) => Type.Literal(r)), Type.Null()], {
        "x-message": `{field} must be one of ${deployRuntimes.join(", ")}`,
      }),
    ),
  },
  { additionalProperties: true, "x-message": "{field} must be an object {supervisor, runtime}" },
);

/** `POST /v1/deploy`. Unknown fields are ignored, as before the schema. */
export const DeployBody = Type.Object(
  {
    repo_url: Type.String({
      minLength: 1,
      "x-message": "repo_url must be a non-empty string",
      "x-required": "repo_url is required",
    }),
    ref: Type.String({
      minLength: 1,
      pattern: "^(?!-)(?!.*\\.\\.)[A-Za-z0-9._/-]+$",
      "x-message": "ref must be a branch, tag or commit sha",
      "x-required": "ref is required (a branch, tag or commit sha)",
    }),
    tenant: Type.String({ minLength: 1, "x-message": "tenant must be a non-empty string" }),
    app_uuid: Type.Optional(
      Type.Union([Type.String({ ...Uuid, "x-message": "app_uuid must be a UUID" }), Type.Null()]),
    ),
    builder: Type.Optional(Type.Union([nonEmpty("builder"), Type.Null()])),
    targets: Type.Optional(
      Type.Union([
        Type.Array(DeployTarget, { "x-message": "targets must be a list of {supervisor, runtime}" }),
        Type.Null(),
      ]),
    ),
  },
  { additionalProperties: true },
);

export const DeployAccepted = open({
  id: Type.String(),
  status: Type.Literal("accepted"),
  status_url: Type.String(),
  events_url: Type.String(),
  delivery_id: Type.Optional(Type.String()),
});

export const DeployStatus = open({
  id: Type.String(),
  state: Type.String({ description: "running, succeeded or failed" }),
  done: Type.Boolean(),
  success: Type.Boolean(),
  created_at: Type.String(),
  trigger: Type.String(),
  repo_url: Type.String(),
  ref: Type.String(),
  tenant: Type.String(),
  results: Type.Array(
    open({
      supervisor: Type.String(),
      success: Type.Boolean(),
      error: Type.Optional(Type.String()),
      log_tail: Type.Optional(Type.Array(Type.String())),
    }),
  ),
  step: Type.Optional(Type.String()),
  finished_at: Type.Optional(Type.String()),
  app_uuid: Type.Optional(Type.String()),
  image_ref: Type.Optional(Type.String()),
  digest: Type.Optional(Type.String()),
  delivery_id: Type.Optional(Type.String()),
  error: Type.Optional(open({ code: Type.String(), message: Type.String(), step: Type.String() })),
});

export const deploySchema = {
  summary: "Start a deploy of a repository at a ref (asynchronous: poll status_url)",
  tags: ["deploy"],
  security: nodeKey,
  "x-error-code": "DEPLOY_REQUEST_INVALID",
  body: DeployBody,
  response: { 202: DeployAccepted, ...errorResponses },
};

const DeployIdParams = Type.Object({ id: Type.String({ maxLength: 200 }) });

export const deployStatusSchema = {
  summary: "A deploy's state: 202 while running, 200 when done",
  tags: ["deploy"],
  security: nodeKey,
  params: DeployIdParams,
  response: { 200: DeployStatus, 202: DeployStatus, ...errorResponses },
};

export const deployEventsSchema = {
  summary: "A deploy's events as text/event-stream (resumes from Last-Event-ID or ?after=)",
  tags: ["deploy"],
  security: nodeKey,
  params: DeployIdParams,
  querystring: Type.Object({ after: Type.Optional(Type.String()) }, { additionalProperties: true }),
  produces: ["text/event-stream"],
  response: { 200: Type.String({ description: "text/event-stream" }), ...errorResponses },
};

export const DeployList = Type.Object({ deploys: Type.Array(DeployStatus) });

export const deploysSchema = {
  summary: "Recent deploys, newest first",
  tags: ["deploy"],
  security: nodeKey,
  response: { 200: DeployList, ...errorResponses },
};

export const deliveriesSchema = {
  summary: "What became of recent webhook deliveries (outcome, ignore reasons)",
  tags: ["deploy"],
  security: nodeKey,
  response: { 200: Type.Object({ deliveries: Type.Array(AnyObject) }), ...errorResponses },
};

export const webhookSchema = {
  summary:
    "Push webhook intake (GitHub or Forgejo). No bearer: the HMAC signature over the raw body is the auth",
  tags: ["deploy"],
  description:
    "The body is the forge's push payload as sent (JSON or a form with `payload`); it is checked by its signature and a webhook parser, not by a schema.",
  response: {
    200: open({ status: Type.String() }),
    202: DeployAccepted,
    "4xx": errorResponses["4xx"],
    "5xx": errorResponses["5xx"],
  },
};

/** The same status and events, reached through the app (node key, or a tenant token for its own apps). */
const AppDeployParams = Type.Object({
  app: Type.String(),
  id: Type.String({ minLength: 1, maxLength: 128 }),
});

export const appDeployStatusSchema = {
  ...deployStatusSchema,
  summary: "One deploy of the app: 202 while running, 200 when done (another app's deploy is 404)",
  security: nodeKeyOrTenant,
  params: AppDeployParams,
};

export const appDeployEventsSchema = {
  ...deployEventsSchema,
  summary: "One deploy of the app as text/event-stream, replayed from the start and followed live",
  security: nodeKeyOrTenant,
  params: AppDeployParams,
};
