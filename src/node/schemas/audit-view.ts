import { Type } from "@sinclair/typebox";
import { AuditEvent } from "./apps.js";
import { errorResponses, nodeKey, open, wholeNumber } from "./common.js";

/** Schemas of the audit views the dashboard reads (node key): a filtered page and the verdict. */

const Filter = Type.Optional(Type.String({ maxLength: 200 }));

export const auditEventsSchema = {
  summary: "Audit events, newest first, filtered by actor, action and app (node key)",
  tags: ["audit"],
  security: nodeKey,
  querystring: Type.Object(
    {
      before: Type.Optional(wholeNumber("before", Number.MAX_SAFE_INTEGER)),
      limit: Type.Optional(wholeNumber("limit", 200)),
      actor: Filter,
      action: Filter,
      // An app name is a DNS label, so it holds none of LIKE's wildcards.
      app: Type.Optional(Type.String({ pattern: "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$" })),
    },
    { additionalProperties: false },
  ),
  response: {
    200: open({ events: Type.Array(AuditEvent), next_before: Type.Optional(Type.Integer()) }),
    ...errorResponses,
  },
};

export const auditVerifySchema = {
  summary: "Recompute every link of the audit chain on the node (node key)",
  tags: ["audit"],
  security: nodeKey,
  response: {
    200: Type.Object({
      ok: Type.Boolean(),
      count: Type.Integer(),
      head: Type.Optional(Type.Object({ seq: Type.Integer(), event_hash: Type.String() })),
      broken: Type.Optional(Type.Object({ seq: Type.Integer(), reason: Type.String() })),
    }),
    ...errorResponses,
  },
};
