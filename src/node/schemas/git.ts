import { Type } from "@sinclair/typebox";

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
 * `x-tabbify-hook-token` header, checked before the body is read, so the body has no validating
 * schema (it would answer a stranger's malformed body first).
 */
export const gitHookSchema = {
  summary: "Internal: a push's pre-receive hook starts the deploy and streams its progress",
  tags: ["git"],
  description:
    'Header `x-tabbify-hook-token` (one per push in progress). Body: {"sha": "<40 hex>", "no_wait"?: true}. Answers text/plain progress ending TABBIFY-OK or TABBIFY-FAILED.',
  response: { 200: Type.String({ description: "text/plain progress" }) },
};
