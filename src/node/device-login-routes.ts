import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { TenantIdentity } from "../auth/types.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import { nodeKeyActor, tenantActor } from "./apps-identity.js";
import type { AuditLog } from "./audit-log.js";
import type { NodeKeyCheck } from "./auth.js";
import { callerFirst } from "./caller-first.js";
import { DEVICE_GRANT_TYPE, type DeviceGrantOptions, DeviceGrants } from "./device-login.js";
import { deviceLoginSchemas } from "./schemas/device-login.js";

/**
 * Device login (RFC 8628) for `tcli login` without a token:
 *
 *   POST /v1/auth/device            anyone: a new grant {device_code, user_code, verification_uri,
 *                                   verification_uri_complete, expires_in, interval}
 *   POST /v1/auth/device/token      anyone holding a device_code: polls; RFC 8628 §3.5 errors
 *   GET  /device                    the verification_uri: the dashboard's approval page
 *   GET  /v1/auth/device/approve    says how to approve from a terminal
 *   POST /v1/auth/device/approve    node key (any tenant, `tenant` required) or an unscoped tenant
 *                                   token (its own tenant): {user_code, tenant?, subject?}
 *   POST /v1/auth/device/deny       same callers: {user_code}; the device gets access_denied
 *
 * Both OAuth endpoints take form-encoded bodies (the RFC's) or JSON, and answer errors in the
 * OAuth shape `{error, error_description}` (plus `code`, the house's upper-case form). Approving
 * mints a tenant token with the auth service's key; the approval is audited (tenant, subject,
 * never a code or the token).
 */

export interface DeviceLoginOptions extends DeviceGrantOptions {
  /** Mints the tenant JWT an approved device receives. Absent: device login answers 503. */
  issueTenantToken?: (opts: { tenant: string; subject: string; ttlSeconds: number }) => Promise<string>;
  /** Lifetime of the minted token. Default 24 h. */
  tokenTtlSecs?: number;
}

export interface DeviceLoginRoutesOptions {
  keyCheck: NodeKeyCheck;
  verifyTenantToken: ((token: string) => Promise<TenantIdentity>) | undefined;
  audit: AuditLog | undefined;
  login: DeviceLoginOptions;
}

const BODY_LIMIT = 4096;

export function registerDeviceLoginRoutes(app: FastifyInstance, opts: DeviceLoginRoutesOptions): void {
  const grants = new DeviceGrants(opts.login);
  const ttl = opts.login.tokenTtlSecs ?? 24 * 3600;
  const issue = opts.login.issueTenantToken;
  const available = () => {
    if (!issue) {
      throw new TabbifyError(
        "DEVICE_LOGIN_UNAVAILABLE",
        "device login needs the auth service's key on this node (--auth-data): log in with a token instead",
      );
    }
    return issue;
  };
  /** Approving and denying: device login available, and an approver, before the body is read. */
  const approver = callerFirst(async (req) => {
    available();
    return approverOf(req.headers.authorization, opts);
  });

  void app.register(async (untyped) => {
    // Handlers take their query and body types from the route schemas.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    scope.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string", bodyLimit: BODY_LIMIT },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );

    scope.post(
      "/v1/auth/device",
      { bodyLimit: BODY_LIMIT, schema: deviceLoginSchemas.start },
      async (req, reply) => {
        available();
        const grant = grants.issue(req.ip);
        const base = `${req.protocol}://${req.host}`;
        // The dashboard's approval page (src/dashboard/ui/pages/device.tsx).
        const verify = `${base}/device`;
        void reply.header("cache-control", "no-store");
        return {
          ...grant,
          verification_uri: verify,
          verification_uri_complete: `${verify}?user_code=${grant.user_code}`,
        };
      },
    );

    scope.post(
      "/v1/auth/device/token",
      // A schema failure is answered in OAuth's shape below, not the house's.
      { bodyLimit: BODY_LIMIT, schema: deviceLoginSchemas.token, attachValidation: true },
      async (req, reply) => {
        void reply.header("cache-control", "no-store");
        const invalid = req.validationError?.validation;
        if (invalid) {
          const grantType = invalid.some(
            (v: { instancePath: string; params: Record<string, unknown> }) =>
              v.instancePath === "/grant_type" || v.params.missingProperty === "grant_type",
          );
          return grantType
            ? oauthError(reply, "unsupported_grant_type", `grant_type must be ${DEVICE_GRANT_TYPE}`)
            : oauthError(reply, "invalid_request", "device_code is missing");
        }
        const result = grants.poll(req.body.device_code);
        if (!result.ok) {
          return oauthError(reply, result.error, describe[result.error], result.interval);
        }
        return {
          access_token: result.approval.accessToken,
          token_type: "Bearer" as const,
          expires_in: result.approval.expiresInSecs,
        };
      },
    );

    scope.get("/v1/auth/device/approve", { schema: deviceLoginSchemas.approvePage }, async (req, reply) => {
      const code = req.query.user_code?.replace(/[^A-Za-z-]/g, "") ?? "CODE";
      return reply
        .type("text/plain; charset=utf-8")
        .send(
          `To let this device in, run from a terminal already logged in to this node:\n\n  tcli login approve ${code} --node ${req.protocol}://${req.host}\n\n(the node key also needs --tenant NAME). To refuse it: tcli login deny ${code}\n`,
        );
    });

    scope.post(
      "/v1/auth/device/approve",
      { bodyLimit: BODY_LIMIT, schema: deviceLoginSchemas.approve, onRequest: approver.onRequest },
      async (req) => {
        const mint = available();
        const { actor, identity } = approver.caller(req);
        const { user_code: userCode, tenant: asked, subject: subjectAsked } = req.body;
        let tenant: string;
        if (identity) {
          tenant = identity.tenant.toLowerCase();
          if (asked !== undefined && asked.toLowerCase() !== tenant) {
            throw new TabbifyError("FORBIDDEN", "a tenant token approves logins for its own tenant only");
          }
        } else {
          if (asked === undefined) {
            throw new TabbifyError(
              "BAD_REQUEST",
              "the node key approves for any tenant, so name one: tcli login approve CODE --tenant NAME",
            );
          }
          tenant = asked.toLowerCase();
        }
        const subject = subjectAsked ?? identity?.subject ?? "device-login";
        await grants.decide(actor, userCode, async () => {
          let accessToken: string;
          try {
            accessToken = await mint({ tenant, subject, ttlSeconds: ttl });
          } catch (err) {
            if (err instanceof TabbifyError) throw new TabbifyError("BAD_REQUEST", err.message);
            throw err;
          }
          return { accessToken, expiresInSecs: ttl, tenant, subject };
        });
        await opts.audit?.record({
          actor,
          action: "auth.device.approve",
          subject: `tenant:${tenant}`,
          after: { tenant, subject, token_ttl_secs: ttl },
        });
        return { approved: true as const, tenant, subject, token_ttl_secs: ttl };
      },
    );

    scope.post(
      "/v1/auth/device/deny",
      { bodyLimit: BODY_LIMIT, schema: deviceLoginSchemas.deny, onRequest: approver.onRequest },
      async (req) => {
        const { actor, identity } = approver.caller(req);
        await grants.decide(actor, req.body.user_code, "deny");
        await opts.audit?.record({
          actor,
          action: "auth.device.deny",
          subject: identity ? `tenant:${identity.tenant.toLowerCase()}` : "tenant:*",
        });
        return { denied: true as const };
      },
    );
  });
}

const describe: Record<string, string> = {
  authorization_pending: "not approved yet: keep polling at the interval",
  slow_down: "polled faster than the interval: the interval grew by 5 seconds",
  access_denied: "the login was refused by an approver",
  expired_token: "this device code expired: start tcli login again",
  invalid_grant: "no such device code (unknown, or already redeemed)",
};

function oauthError(reply: FastifyReply, error: string, description: string | undefined, interval?: number) {
  return reply.status(400).send({
    error,
    error_description: description ?? error,
    code: error.toUpperCase(),
    ...(interval !== undefined ? { interval } : {}),
  });
}

/** The node key, or an unscoped tenant token: a robot token's limits must not mint a full one. */
async function approverOf(
  authorization: string | undefined,
  opts: DeviceLoginRoutesOptions,
): Promise<{ actor: string; identity?: TenantIdentity }> {
  const token = bearerToken(authorization);
  try {
    opts.keyCheck.assert(authorization);
    return { actor: nodeKeyActor(token ?? "") };
  } catch (keyFailure) {
    if (token === undefined || !opts.verifyTenantToken || token.split(".").length !== 3) throw keyFailure;
  }
  let identity: TenantIdentity;
  try {
    identity = await opts.verifyTenantToken(token);
  } catch (err) {
    if (err instanceof TabbifyError) {
      throw new TabbifyError("UNAUTHORIZED", `the bearer token is not valid here (${err.message})`);
    }
    throw err;
  }
  if (identity.scopes !== undefined) {
    throw new TabbifyError("FORBIDDEN", "a robot token (with scopes) cannot approve logins");
  }
  return { actor: tenantActor(identity), identity };
}
