import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadOrCreateSigningKey, signingKeyFileName } from "../auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../auth/tenant-token.js";
import type { MeshMode } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { readKeyFile } from "../core/key-file.js";
import { createLogger } from "../core/log.js";
import type { NodeRegistryOptions } from "../node/apps-node.js";
import { parseSeedApps } from "../node/apps-seed.js";
import type { DeviceLoginOptions } from "../node/device-login-routes.js";
import { HostProbe } from "../node/host-probe.js";
import { parseSignaturePolicy } from "../node/image-signatures.js";
import { type DataPlane, dataPlanes, type NodeDeployOptions, startNode } from "../node/index.js";
import { tenantRegistryAccess } from "../node/registry-access.js";
import { loadGitCredentials } from "../pipeline/git-credentials.js";
import { GITHUB_API_URL, loadAppPrivateKey } from "../pipeline/github.js";
import { warnIfPublic } from "./bind-warning.js";
import {
  allowPrivateReposOption,
  databaseOption,
  type OptionSpec,
  optionsHelp,
  parseListen,
  parseOptions,
  passedAsFlag,
  untilSignal,
} from "./flags.js";
import { applyLogOptions, logOptions } from "./log-options.js";
import { joinMesh, meshJoinOptions } from "./mesh-join.js";

export const nodeOptions: OptionSpec[] = [
  {
    flag: "listen",
    env: "TABBIFY_NODE_LISTEN",
    help: "HOST:PORT to serve the API and the /app/<uuid> proxy on (TABBIFY_NODE_BIND is accepted too)",
  },
  { flag: "data", env: "TABBIFY_NODE_DATA_DIR", default: ".tabbify/node", help: "data directory" },
  {
    flag: "database",
    env: "TABBIFY_DATABASE_URL",
    help: "postgres://USER@HOST:PORT/DB: keep the node's state in Postgres (shared by several nodes) instead of DATA/node.db; a password goes in the env twin only",
  },
  {
    flag: "mesh",
    env: "TABBIFY_MESH",
    default: "local",
    help: "app addresses: local (loopback twins), ula, or wireguard (ula, and the node joins its own coordinator's WireGuard mesh)",
  },
  ...meshJoinOptions,
  {
    flag: "peer-timeout-secs",
    env: "TABBIFY_PEER_TIMEOUT_SECS",
    default: "60",
    help: "drop roster and mesh peers silent for this long (env also TABBIFY_MESH_HEARTBEAT_TIMEOUT_SECS)",
  },
  {
    flag: "github-api-url",
    env: "GITHUB_API_URL",
    default: GITHUB_API_URL,
    help: "GitHub API base (GitHub Enterprise: https://HOST/api/v3)",
  },
  { flag: "github-app-id", env: "GITHUB_APP_ID", help: "GitHub App id (private repos; key from env)" },
  {
    flag: "github-app-private-key-file",
    env: "GITHUB_APP_PRIVATE_KEY_FILE",
    help: "file holding the GitHub App's PEM private key (or the PEM itself in env GITHUB_APP_PRIVATE_KEY)",
  },
  {
    flag: "forgejo-api-url",
    env: "FORGEJO_API_URL",
    help: "Forgejo API base, e.g. https://HOST/api/v1 (private repos: access token in env FORGEJO_TOKEN)",
  },
  {
    flag: "registry",
    env: "TABBIFY_REGISTRY",
    help: "registry HOST:PORT the pipeline pushes to and targets pull from",
  },
  {
    flag: "supervisor-key-file",
    env: "TABBIFY_SUPERVISOR_KEY_FILE",
    help: "file holding the supervisors' API key (a supervisor's <data>/api.key; or the key itself in env TABBIFY_SUPERVISOR_KEY)",
  },
  {
    flag: "seed-apps",
    env: "TABBIFY_SEED_APPS",
    help: 'JSON {"apps":[…]} or TOML [[apps]] file: seeds the app registry once, on first boot, when it is empty',
  },
  {
    flag: "allowed-servers",
    env: "TABBIFY_ALLOWED_SERVERS",
    multiple: true,
    help: "supervisor names apps may list besides those on the roster (repeat, or comma-separated in env)",
  },
  {
    flag: "auth-data",
    env: "TABBIFY_AUTH_DATA_DIR",
    help: "the auth service's data dir: its signing key mints the tenant tokens traded for registry tokens",
  },
  {
    flag: "data-plane",
    env: "TABBIFY_DATA_PLANE",
    default: "node",
    help: "who serves /app/<uuid>: node (embedded proxy), or nginx, caddy or haproxy (a supervised child on --listen; the API moves to a loopback port behind it)",
  },
  allowPrivateReposOption,
  {
    flag: "allow-local-repos",
    env: "TABBIFY_ALLOW_LOCAL_REPOS",
    boolean: true,
    help: "deploy file:// URLs and absolute paths on this machine (refused by default; `tabbify up` sets it)",
  },
  {
    flag: "ssh-dir",
    env: "TABBIFY_SSH_DIR",
    help: "the node's key (id_ed25519) and known_hosts for ssh:// git remotes; default <data>/ssh (host keys are never accepted on first use)",
  },
  {
    flag: "git-credentials",
    env: "TABBIFY_GIT_CREDENTIALS_FILE",
    help: "0600 file of https://USER:PASSWORD@HOST lines (git-credential-store format): the node's credential for each git host that is no forge",
  },
  {
    flag: "signature-policy",
    env: "TABBIFY_SIGNATURE_POLICY",
    help: "ENV=require|warn,… what verify_signature does with an unsigned image per environment (default prod=require, others warn)",
  },
  ...logOptions,
];

/** Secrets come from the environment only (never flags: argv is visible in ps). */
export const nodeSecretEnv = [
  "TABBIFY_NODE_KEY",
  "TABBIFY_SUPERVISOR_KEY",
  "GITHUB_WEBHOOK_SECRET",
  "FORGEJO_WEBHOOK_SECRET",
  "GITHUB_APP_PRIVATE_KEY",
  "FORGEJO_TOKEN",
  "TABBIFY_REGISTRY_EVENTS_TOKEN",
] as const;

const usage =
  "tabbify node [--listen HOST:PORT] [--data DIR] [--database postgres://…] [--mesh local|ula] [--data-plane node|nginx|caddy|haproxy] [--registry HOST:PORT --auth-data DIR] [--github-app-id ID] [--seed-apps FILE] [--allowed-servers NAME,…]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, nodeOptions);
  if (opts.help) {
    process.stdout.write(
      `${optionsHelp(usage, nodeOptions)}\nSecrets come from the environment only (never flags, so they stay out of ps): ${nodeSecretEnv.join(", ")}.\n`,
    );
    return 0;
  }
  const listen = parseListen(opts.values.listen ?? env.TABBIFY_NODE_BIND ?? "127.0.0.1:8090");
  const wireguard = opts.values.mesh === "wireguard";
  const mesh = wireguard ? "ula" : opts.values.mesh;
  if (mesh !== "local" && mesh !== "ula") {
    throw new TabbifyError("USAGE", `--mesh wants local, ula or wireguard, got "${mesh}"`);
  }
  const dataPlane = parseDataPlane(opts.values["data-plane"]);
  // The seed's coordinator names the timeout TABBIFY_MESH_HEARTBEAT_TIMEOUT_SECS: taken when
  // neither the flag nor TABBIFY_PEER_TIMEOUT_SECS is given.
  const timeoutSecs = Number(
    passedAsFlag(argv, "peer-timeout-secs") || env.TABBIFY_PEER_TIMEOUT_SECS
      ? opts.values["peer-timeout-secs"]
      : (env.TABBIFY_MESH_HEARTBEAT_TIMEOUT_SECS ?? opts.values["peer-timeout-secs"]),
  );
  if (!Number.isFinite(timeoutSecs) || timeoutSecs <= 0) {
    throw new TabbifyError(
      "USAGE",
      `--peer-timeout-secs wants a positive number, got "${opts.values["peer-timeout-secs"]}"`,
    );
  }
  applyLogOptions(opts.values);
  const logger = createLogger("node");
  const nodeKey = env.TABBIFY_NODE_KEY || undefined;
  if (!nodeKey) logger.warn("TABBIFY_NODE_KEY is not set: authenticated routes answer 503");
  const databaseUrl = databaseOption(opts.values.database, passedAsFlag(argv, "database"));
  const deploy = await deployOptions(opts.values, env);
  deploy.allowPrivateRepos = opts.flags["allow-private-repos"] === true;
  deploy.allowLocalRepos = opts.flags["allow-local-repos"] === true;
  if (opts.values["ssh-dir"] !== undefined) deploy.sshDir = opts.values["ssh-dir"];
  deploy.signaturePolicies = parseSignaturePolicy(opts.values["signature-policy"]);
  const credentialsFile = opts.values["git-credentials"];
  if (credentialsFile !== undefined) deploy.gitCredentials = await loadGitCredentials(credentialsFile);
  if (!deploy.githubWebhookSecret)
    logger.warn("GITHUB_WEBHOOK_SECRET is not set: /v1/webhooks/github answers 503");
  if (!deploy.registry) logger.warn("TABBIFY_REGISTRY is not set: deploys fail with REGISTRY_MISSING");
  if (!deploy.supervisorKey)
    logger.warn(
      "no supervisor API key (TABBIFY_SUPERVISOR_KEY or --supervisor-key-file): supervisors refuse the node's deploys",
    );
  warnIfPublic("node", listen.host);
  const node = await startNode({
    host: listen.host,
    port: listen.port,
    dataDir: opts.values.data,
    ...(databaseUrl ? { databaseUrl } : {}),
    mesh: mesh as MeshMode,
    nodeKey,
    ...(env.TABBIFY_REGISTRY_EVENTS_TOKEN ? { registryEventsToken: env.TABBIFY_REGISTRY_EVENTS_TOKEN } : {}),
    peerTimeoutMs: timeoutSecs * 1000,
    ...(wireguard ? { hostProbe: new HostProbe() } : {}),
    logger,
    deploy,
    registry: await registryOptions(opts.values, opts.lists),
    dataPlane,
    deviceLogin: await deviceLoginOptions(opts.values["auth-data"]),
    // Under `tabbify up` the node's IPC channel leads to `up`, which performs platform upgrades.
    ...(process.send ? { platformUpgradeChannel: (request: object) => process.send!(request) } : {}),
  });
  // The node joins its own coordinator with its own key: no join token needed.
  const meshJoiner = wireguard
    ? await joinMesh({
        values: { ...opts.values, coordinator: opts.values.coordinator ?? node.url },
        env: { TABBIFY_MESH_JOIN_TOKEN: env.TABBIFY_MESH_JOIN_TOKEN || nodeKey },
        dataDir: opts.values.data as string,
        displayName: "node",
        tags: ["node"],
        logger,
      })
    : undefined;
  const signal = await untilSignal();
  logger.info("shutting down", { signal });
  await meshJoiner?.stop().catch(() => {});
  await node.close();
  return 0;
}

async function registryOptions(
  values: Record<string, string | undefined>,
  lists: Record<string, string[]>,
): Promise<NodeRegistryOptions> {
  const registry: NodeRegistryOptions = {};
  const seedFile = values["seed-apps"];
  if (seedFile !== undefined) registry.seedApps = parseSeedApps(await readFile(seedFile, "utf8"), seedFile);
  const allowed = (lists["allowed-servers"] ?? []).flatMap((s) => s.split(",")).map((s) => s.trim());
  if (allowed.length > 0) registry.allowedServers = allowed.filter(Boolean);
  const authData = values["auth-data"];
  if (authData !== undefined && existsSync(join(authData, signingKeyFileName))) {
    // Tenant tokens are checked with the auth service's key, so a tenant can manage its own apps.
    const key = await loadOrCreateSigningKey(authData);
    registry.verifyTenantToken = (token) => verifyTenantToken(key, token);
  }
  return registry;
}

/** Device login mints tenant tokens with the auth service's key, when the node holds it. */
async function deviceLoginOptions(authData: string | undefined): Promise<DeviceLoginOptions> {
  if (authData === undefined || !existsSync(join(authData, signingKeyFileName))) return {};
  const key = await loadOrCreateSigningKey(authData);
  return { issueTenantToken: (o) => issueTenantToken(key, o) };
}

function parseDataPlane(value: string | undefined): DataPlane {
  const plane = dataPlanes.find((p) => p === value);
  if (!plane) {
    throw new TabbifyError("USAGE", `--data-plane wants ${dataPlanes.join(", ")}, got "${value}"`);
  }
  return plane;
}

async function deployOptions(
  values: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
): Promise<NodeDeployOptions> {
  const deploy: NodeDeployOptions = {};
  if (env.GITHUB_WEBHOOK_SECRET) deploy.githubWebhookSecret = env.GITHUB_WEBHOOK_SECRET;
  if (env.FORGEJO_WEBHOOK_SECRET) deploy.forgejoWebhookSecret = env.FORGEJO_WEBHOOK_SECRET;
  if (values["github-api-url"]) deploy.githubApiUrl = values["github-api-url"];
  if (values["forgejo-api-url"]) deploy.forgejoApiUrl = values["forgejo-api-url"];
  if (env.FORGEJO_TOKEN) {
    if (!deploy.forgejoApiUrl) {
      throw new TabbifyError(
        "USAGE",
        "FORGEJO_TOKEN needs FORGEJO_API_URL (--forgejo-api-url): which Forgejo it is for",
      );
    }
    deploy.forgejoToken = env.FORGEJO_TOKEN;
  }

  if (env.TABBIFY_SUPERVISOR_KEY) deploy.supervisorKey = env.TABBIFY_SUPERVISOR_KEY;
  else if (values["supervisor-key-file"])
    deploy.supervisorKey = await readKeyFile(values["supervisor-key-file"]);
  if (deploy.supervisorKey !== undefined && deploy.supervisorKey === env.TABBIFY_NODE_KEY) {
    throw new TabbifyError("USAGE", "the supervisor API key must not be the node key");
  }

  const appId = values["github-app-id"];
  const keyFile = values["github-app-private-key-file"];
  let pem = env.GITHUB_APP_PRIVATE_KEY || undefined;
  if (pem === undefined && keyFile) pem = await readFile(keyFile, "utf8");
  if ((appId === undefined) !== (pem === undefined)) {
    throw new TabbifyError(
      "USAGE",
      "a GitHub App needs both GITHUB_APP_ID and its key (GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE)",
    );
  }
  if (appId !== undefined && pem !== undefined) {
    // Env values often carry the PEM with literal \n; restore the line breaks.
    const privateKeyPem = pem.includes("\\n") && !pem.includes("\n") ? pem.replaceAll("\\n", "\n") : pem;
    loadAppPrivateKey(privateKeyPem);
    deploy.githubApp = { appId, privateKeyPem };
  }

  const registry = values.registry;
  const authData = values["auth-data"];
  if (registry !== undefined) {
    if (authData === undefined) {
      throw new TabbifyError(
        "USAGE",
        "--registry needs --auth-data (TABBIFY_AUTH_DATA_DIR): the node mints tenant tokens with the auth service's key to get registry tokens",
      );
    }
    deploy.registry = await tenantRegistryAccess({ registryHost: registry, authDataDir: authData });
  }
  return deploy;
}
