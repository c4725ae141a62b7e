import { Type } from "@sinclair/typebox";

/** The auth service's route schemas (src/auth/server.ts). Errors are `{error, code}`. */

export const MAX_TOKEN_LENGTH = 16 * 1024;

const notAnObject = 'body must be a JSON object like {"token": "<jwt>"}';
const missing = 'body is missing "token" (a non-empty string)';

export const ValidateBody = Type.Object(
  {
    token: Type.String({
      minLength: 1,
      maxLength: MAX_TOKEN_LENGTH,
      "x-message": { maxLength: `"token" is longer than ${MAX_TOKEN_LENGTH} characters`, default: missing },
      "x-required": missing,
    }),
  },
  { additionalProperties: true, "x-message": notAnObject },
);

export const ValidateResponse = Type.Object({
  subject: Type.String(),
  network: Type.Union([Type.String(), Type.Null()], { description: "The raw network claim, or null" }),
  tenant: Type.String(),
  expires_at: Type.Integer({ description: "Unix seconds" }),
  scopes: Type.Union(
    [
      Type.Array(
        Type.Object({ type: Type.String(), name: Type.String(), actions: Type.Array(Type.String()) }),
      ),
      Type.Null(),
    ],
    { description: "A robot token's scopes; null for a token that speaks for the whole tenant" },
  ),
});

const AuthError = Type.Object({ error: Type.String(), code: Type.String() });

export const authSchemas = {
  health: {
    summary: "Liveness (unauthenticated)",
    response: { 200: Type.Object({ status: Type.Literal("ok") }) },
  },
  validate: {
    summary: "Check a tenant token: 200 with its identity, 401 when invalid or expired",
    body: ValidateBody,
    response: { 200: ValidateResponse, "4xx": AuthError, "5xx": AuthError },
  },
};
