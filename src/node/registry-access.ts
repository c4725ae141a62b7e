import { stat } from "node:fs/promises";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { loadOrCreateSigningKey, type SigningKey, signingKeyFileName } from "../auth/keys.js";
import { accessClaim, allows } from "../auth/registry-scope.js";
import { issueTenantToken } from "../auth/tenant-token.js";
import { isErrno, isTabbifyError, TabbifyError } from "../core/errors.js";
import type { RegistryAccess } from "../pipeline/executor.js";
import { RegistryClient, type TokenAnswer } from "../registry/client.js";

/**
 * How the node gets registry tokens for the tenant a deploy is for: it holds the auth service's
 * signing key (read from the auth data dir, on the same host as in `tabbify up`), signs a tenant
 * JWT that lives two minutes, and exchanges it at the registry's own `/auth/token`, exactly as
 * `docker login` would. The registry asks the auth service to validate the JWT and answers with
 * its short-lived registry token (5 minutes by default), which goes to the builder (push) and the
 * targets (pull) and nowhere else. The node never keeps a long-lived registry credential.
 *
 * Each token is scoped to the one repository of the deploy: the builder's push token to
 * `pull,push` on `<tenant>/<app uuid>`, a target's pull token to `pull` on it. A grant that comes
 * back without what was asked (a registry that dropped the scope) fails here, by name, rather
 * than as a 401 in the middle of a build or a pull.
 */

const TENANT_JWT_TTL_SECONDS = 120;

export interface TenantRegistryAccessOptions {
  /** `host[:port]` of the registry, as it goes into image references. */
  registryHost: string;
  /** Where `/auth/token` is reached. Default `http://<registryHost>`. */
  registryUrl?: string;
  /** The auth service's data dir, holding `signing-key.pem`. */
  authDataDir: string;
  /** The registry's service name (`?service=`). Default `tabbify-registry`. */
  service?: string;
}

/** Loads the key once, failing at start-up (not at the first deploy) when it is not there. */
export async function tenantRegistryAccess(opts: TenantRegistryAccessOptions): Promise<RegistryAccess> {
  const keyPath = join(opts.authDataDir, signingKeyFileName);
  try {
    await stat(keyPath);
  } catch (err) {
    if (isErrno(err, "ENOENT")) {
      throw new TabbifyError(
        "USAGE",
        `no auth signing key at ${keyPath}: point TABBIFY_AUTH_DATA_DIR at the auth service's --data dir`,
      );
    }
    throw err;
  }
  const key: SigningKey = await loadOrCreateSigningKey(opts.authDataDir);
  const registry = new RegistryClient({
    url: opts.registryUrl ?? `http://${opts.registryHost}`,
    failure: "REGISTRY_TOKEN_FAILED",
  });
  const base = registry.base;
  const service = opts.service ?? "tabbify-registry";

  const token = async (tenant: string, appUuid: string, actions: string): Promise<string> => {
    const namespace = tenant.toLowerCase();
    // Registry names are lowercase, and the builder pushes to `<tenant>/<app uuid>` lowercased.
    const repository = `${namespace}/${appUuid.toLowerCase()}`;
    const jwt = await issueTenantToken(key, {
      tenant: namespace,
      subject: "tabbify-node",
      ttlSeconds: TENANT_JWT_TTL_SECONDS,
    });
    const scope = `repository:${repository}:${actions}`;
    let body: TokenAnswer;
    try {
      body = await registry.token(service, scope, { user: "tabbify-node", password: jwt });
    } catch (err) {
      if (!isTabbifyError(err, "REGISTRY_TOKEN_FAILED")) throw err;
      const status = (err.detail as { status?: number } | undefined)?.status;
      throw new TabbifyError(
        "REGISTRY_TOKEN_FAILED",
        `registry at ${base} refused a token for ${namespace} (HTTP ${status})`,
      );
    }
    const value = body.token ?? body.access_token;
    if (typeof value !== "string" || value === "") {
      throw new TabbifyError("REGISTRY_TOKEN_FAILED", `registry at ${base} answered without a token`);
    }
    if (!grants(value, repository, actions.split(","))) {
      throw new TabbifyError(
        "REGISTRY_TOKEN_FAILED",
        `registry at ${base} did not grant ${scope} (the token's access list lacks it)`,
      );
    }
    return value;
  };

  return {
    host: opts.registryHost,
    pushToken: (tenant, appUuid) => token(tenant, appUuid, "pull,push"),
    pullToken: (tenant, appUuid) => token(tenant, appUuid, "pull"),
  };
}

/** Whether a registry token's `access` claim holds every action on the repository. */
function grants(token: string, repository: string, actions: string[]): boolean {
  let access: ReturnType<typeof accessClaim>;
  try {
    access = accessClaim(decodeJwt(token).access);
  } catch {
    return false;
  }
  return access !== undefined && actions.every((a) => allows(access, "repository", repository, a));
}
