import { Type } from "@sinclair/typebox";
import { NodeError } from "./common.js";

/** Git's smart HTTP protocol on `/git/<app>.git/…` (src/node/git-push.ts). */
export const gitSchema = {
  summary: "Git smart HTTP: clone from and push to `/git/<app>.git` (a push deploys)",
  tags: ["git"],
  description:
    "Basic auth: any user name, the node key or a tenant token as password. Bodies are git's packs, streamed to git http-backend; the protocol is git's (https://git-scm.com/docs/http-protocol), not JSON.",
  security: [{ gitBasic: [] }],
  response: { 200: Type.String({ description: "git protocol bytes" }) },
};

/**
 * The pushed repository's pre-receive hook calls back here. Its credential is the one-time
 * `x-tabbify-hook-token` header, checked in an `onRequest` hook before the body is read.
 */
export const GitHookBody = Type.Object(
  {
    sha: Type.String({
      pattern: "^[0-9a-f]{40}$",
      "x-message": "sha must be a 40-hex commit",
      "x-required": "sha must be a 40-hex commit",
    }),
    no_wait: Type.Optional(Type.Boolean({ "x-message": "no_wait must be true or false" })),
  },
  { additionalProperties: true, "x-message": "the body must be {sha, no_wait?}" },
);

export const gitHookSchema = {
  summary: "Internal: a push's pre-receive hook starts the deploy and streams its progress",
  tags: ["git"],
  description:
    "Header `x-tabbify-hook-token` (one per push in progress). Answers text/plain progress ending TABBIFY-OK or TABBIFY-FAILED.",
  security: [{ hookToken: [] }],
  "x-error-code": "DEPLOY_REQUEST_INVALID",
  body: GitHookBody,
  produces: ["text/plain"],
  response: {
    200: Type.String({ description: "text/plain progress" }),
    "4xx": NodeError,
    "5xx": NodeError,
  },
};
