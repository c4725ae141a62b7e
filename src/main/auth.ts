/**
 * `tabbify auth`: the auth service's composition root.
 *   tabbify auth [--listen HOST:PORT] [--data DIR]           serve POST /v1/validate
 *   tabbify auth token --tenant T [--subject S] [--ttl 24h] [--scope S…]
 *                                                            issue a tenant JWT (last stdout line)
 */

import { userInfo } from "node:os";
import { loadOrCreateSigningKey } from "../auth/keys.js";
import { formatScope, robotScopes } from "../auth/registry-scope.js";
import { buildAuthApp } from "../auth/server.js";
import { issueTenantToken, maxTenantTokenTtlSeconds, verifyTenantToken } from "../auth/tenant-token.js";
import { parseDurationSeconds } from "../core/duration.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { createLogger, httpLogger } from "../core/log.js";
import { dataDirPermissionWarnings } from "../storage/permissions.js";
import { listenOptions } from "../upgrade/listener-handoff.js";
import { warnIfPublic } from "./bind-warning.js";
import { type OptionSpec, optionsHelp, parseListen, parseOptions, required, untilSignal } from "./flags.js";
import { applyLogOptions, logOptions } from "./log-options.js";

const dataSpec: OptionSpec = {
  flag: "data",
  env: "AUTH_DATA_DIR",
  default: "./.tabbify/auth",
  help: "directory holding the signing key (signing-key.pem, mode 0600)",
};

export const serveSpecs: OptionSpec[] = [
  {
    flag: "listen",
    env: "AUTH_LISTEN",
    default: "127.0.0.1:8091",
    help: "address to serve on (port 0: any free port)",
  },
  dataSpec,
  ...logOptions,
];

const tokenSpecs: OptionSpec[] = [
  { flag: "tenant", help: "tenant the token grants (its registry namespace), required" },
  { flag: "subject", help: 'who the token is for (the sub claim); default: your login name, else "dev"' },
  { flag: "ttl", default: "24h", help: "lifetime: 90s, 15m, 24h, 7d or plain seconds" },
  {
    flag: "scope",
    multiple: true,
    help: "robot token: limit it to repository:<tenant>/<name>:<pull,push,delete> (repeatable); none = whole tenant",
  },
  dataSpec,
];

const serveUsage = "tabbify auth [flags]\n       tabbify auth token --tenant T [--subject S] [flags]";
const tokenUsage = "tabbify auth token --tenant T [--subject S] [flags]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const isToken = argv[0] === "token";
  try {
    return isToken ? await issueToken(argv.slice(1), env) : await serve(argv, env);
  } catch (err) {
    if (!isTabbifyError(err, "USAGE")) throw err;
    process.stderr.write(`tabbify auth: ${err.message}\n\n${usageText(isToken)}`);
    return 2;
  }
}

function usageText(isToken: boolean): string {
  if (isToken) return optionsHelp(tokenUsage, tokenSpecs);
  return `${optionsHelp(serveUsage, serveSpecs)}\nServes GET /health and POST /v1/validate {"token": "<jwt>"}.\n\`tabbify auth token --help\` lists the flags for issuing a tenant token.\n`;
}

async function serve(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, serveSpecs);
  if (opts.help) {
    process.stdout.write(usageText(false));
    return 0;
  }
  const { host, port } = parseListen(required(opts.values.listen, "--listen"));
  applyLogOptions(opts.values);
  const log = createLogger("auth");
  warnIfPublic("auth", host);
  const dataDir = required(opts.values.data, "--data");
  for (const warning of await dataDirPermissionWarnings(dataDir)) {
    log.warn(warning);
  }
  const key = await loadOrCreateSigningKey(dataDir);
  const app = buildAuthApp({ key, logger: httpLogger("auth.http") });
  try {
    await app.listen(listenOptions({ host, port }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unknown error";
    throw new TabbifyError("LISTEN_FAILED", `cannot listen on ${host}:${port}: ${code}`);
  }
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("auth server has no TCP address");
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  log.info("signing key", { kid: key.kid, data: dataDir });
  process.stdout.write(`tabbify auth listening on http://${shownHost}:${address.port}\n`);
  const signal = await untilSignal();
  log.info("shutting down", { signal });
  await app.close();
  return 0;
}

async function issueToken(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, tokenSpecs);
  if (opts.help) {
    process.stdout.write(usageText(true));
    return 0;
  }
  const tenant = required(opts.values.tenant, "--tenant");
  const subject = opts.values.subject || defaultSubject(env);
  const ttlSeconds = parseTtl(required(opts.values.ttl, "--ttl"));
  const dataDir = required(opts.values.data, "--data");
  const key = await loadOrCreateSigningKey(dataDir);
  const scopeFlags = opts.lists.scope ?? [];
  let token: string;
  try {
    const scopes = scopeFlags.length > 0 ? robotScopes(tenant, scopeFlags) : undefined;
    token = await issueTenantToken(key, { tenant, subject, ttlSeconds, ...(scopes ? { scopes } : {}) });
  } catch (err) {
    // Bad --tenant / --subject / --scope values are the caller's to fix, so they read as usage errors.
    const usage = ["TENANT_INVALID", "SUBJECT_INVALID", "TTL_INVALID", "SCOPE_INVALID"];
    if (isTabbifyError(err) && usage.includes(err.code)) {
      throw new TabbifyError("USAGE", err.message);
    }
    throw err;
  }
  const { expiresAt, scopes } = await verifyTenantToken(key, token);
  const expires = new Date(expiresAt * 1000).toISOString();
  const limits = scopes ? `, limited to ${scopes.map(formatScope).join(" ")}` : "";
  process.stderr.write(
    `tabbify auth: token for tenant ${tenant}, subject ${subject}${limits}, expires ${expires}\n`,
  );
  process.stdout.write(`${token}\n`);
  return 0;
}

/** `90s`, `15m`, `24h`, `7d` or plain seconds → seconds. */
export function parseTtl(value: string): number {
  return parseDurationSeconds(value, "ttl", {
    min: 1,
    max: maxTenantTokenTtlSeconds,
    hint: `positive, at most ${maxTenantTokenTtlSeconds / 86400}d`,
  });
}

/** `$USER` is unset in some shells (containers, cron): fall back to the OS's name, then "dev". */
function defaultSubject(env: NodeJS.ProcessEnv): string {
  if (env.USER) return env.USER;
  try {
    const name = userInfo().username;
    if (name) return name;
  } catch {
    // No passwd entry for this uid.
  }
  return "dev";
}
