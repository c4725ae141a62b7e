import { Type } from "@sinclair/typebox";
import { DEVICE_GRANT_TYPE } from "../device-login.js";
import { errorResponses, nodeKeyOrTenant, open } from "./common.js";

/**
 * Schemas of device login (RFC 8628, src/node/device-login-routes.ts). The OAuth endpoints take
 * form-encoded bodies (the RFC's) or JSON. The token endpoint answers a schema failure in the
 * OAuth error shape (`invalid_request`, `unsupported_grant_type`), so it validates with
 * `attachValidation` and says it itself.
 */

const tag = ["device login"];
const none: { [scheme: string]: string[] }[] = [];
const forms = ["application/x-www-form-urlencoded", "application/json"];

const field = (name: string) =>
  Type.String({
    minLength: 1,
    maxLength: 200,
    "x-message": `${name} must be a non-empty string`,
    "x-required": `${name} must be a non-empty string`,
  });

/** RFC 8628 §3.5's error body, with the house's upper-case `code`. */
export const OAuthError = open({
  error: Type.String(),
  error_description: Type.String(),
  code: Type.String(),
  interval: Type.Optional(Type.Integer()),
});

export const DeviceTokenBody = Type.Object(
  {
    grant_type: Type.Literal(DEVICE_GRANT_TYPE),
    device_code: Type.String({ minLength: 1, maxLength: 200 }),
  },
  { additionalProperties: true },
);

export const ApproveBody = Type.Object(
  {
    user_code: field("user_code"),
    tenant: Type.Optional(field("tenant")),
    subject: Type.Optional(field("subject")),
  },
  { additionalProperties: true, "x-message": "the body must be {user_code, tenant?, subject?}" },
);

export const DenyBody = Type.Object(
  { user_code: field("user_code") },
  { additionalProperties: true, "x-message": "the body must be {user_code}" },
);

export const deviceLoginSchemas = {
  start: {
    summary: "Device login (RFC 8628): a device code, a user code and where to approve it",
    tags: tag,
    security: none,
    response: {
      200: open({
        device_code: Type.String(),
        user_code: Type.String(),
        verification_uri: Type.String(),
        verification_uri_complete: Type.String(),
        expires_in: Type.Integer(),
        interval: Type.Integer(),
      }),
      ...errorResponses,
    },
  },
  token: {
    summary:
      "Poll for the device's token (OAuth errors: authorization_pending, slow_down, expired_token, access_denied)",
    tags: tag,
    security: none,
    consumes: forms,
    body: DeviceTokenBody,
    response: {
      200: Type.Object({
        access_token: Type.String(),
        token_type: Type.Literal("Bearer"),
        expires_in: Type.Integer(),
      }),
      400: OAuthError,
      ...errorResponses,
    },
  },
  approvePage: {
    summary: "What approving a user code means, for a person at a browser",
    tags: tag,
    security: none,
    querystring: Type.Object(
      { user_code: Type.Optional(Type.String({ maxLength: 64 })) },
      { additionalProperties: true },
    ),
    produces: ["text/plain"],
    response: { 200: Type.String({ description: "how to approve, as text" }), ...errorResponses },
  },
  approve: {
    summary: "Approve a waiting device's user code",
    tags: tag,
    security: nodeKeyOrTenant,
    consumes: forms,
    body: ApproveBody,
    response: {
      200: Type.Object({
        approved: Type.Literal(true),
        tenant: Type.String(),
        subject: Type.String(),
        token_ttl_secs: Type.Integer(),
      }),
      ...errorResponses,
    },
  },
  deny: {
    summary: "Deny a waiting device's user code",
    tags: tag,
    security: nodeKeyOrTenant,
    consumes: forms,
    body: DenyBody,
    response: { 200: Type.Object({ denied: Type.Literal(true) }), ...errorResponses },
  },
};
