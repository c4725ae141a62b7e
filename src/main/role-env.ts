/**
 * The environment `tabbify up` hands each role: the variables that role reads (the env twins of
 * its flags and the secrets it takes from env) plus the basics any process needs, nothing else.
 * A GitHub App key set for the node never reaches the registry, auth or the supervisor (and
 * through it the runners), and an unrelated secret in the shell that started `up` reaches none.
 */
import { artifactStoreOptions } from "./artifact-store-options.js";
import { serveSpecs as authOptions } from "./auth.js";
import type { OptionSpec } from "./flags.js";
import { nodeOptions, nodeSecretEnv } from "./node.js";
import { registryOptions } from "./registry.js";
import { specs as supervisorOptions } from "./supervisor.js";

export type RoleName = "auth" | "registry" | "node" | "supervisor";

/** What every process may need to run: where programs, home and temp are, locale, proxies, CAs. */
const basics = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "TMPDIR",
  "LANG",
  "LANGUAGE",
  "LC_ALL",
  "LC_CTYPE",
  "TZ",
  "NODE_OPTIONS",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
];

/** The AWS SDK's default credential chain, for a role that may store in S3. */
const awsChain = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_PROFILE",
  "AWS_CONFIG_FILE",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_ROLE_ARN",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/** Where the docker CLI finds its daemon and config (docker workloads, builds). */
const dockerClient = [
  "DOCKER_HOST",
  "DOCKER_CONFIG",
  "DOCKER_CONTEXT",
  "DOCKER_CERT_PATH",
  "DOCKER_TLS_VERIFY",
];

const envOf = (options: OptionSpec[]): string[] => options.flatMap((o) => (o.env ? [o.env] : []));

export const roleEnvNames: Record<RoleName, readonly string[]> = {
  auth: [...basics, ...envOf(authOptions)],
  registry: [
    ...basics,
    ...envOf(registryOptions),
    ...awsChain,
    "REGISTRY_NOTIFY_TOKEN",
    "REGISTRY_GC_NODE_TOKEN",
  ],
  node: [...basics, ...envOf(nodeOptions), ...nodeSecretEnv, "TABBIFY_NODE_BIND"],
  // The node key registers the supervisor and its runners on the node's roster.
  supervisor: [
    ...basics,
    ...envOf(supervisorOptions),
    ...envOf(artifactStoreOptions),
    ...awsChain,
    ...dockerClient,
    "SUPERVISOR_API_KEY",
    "TABBIFY_NODE_KEY",
  ],
};

/** `from` cut down to what `role` reads, then `set` (values `up` decided) on top. */
export function roleEnv(
  role: RoleName,
  from: NodeJS.ProcessEnv,
  set: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of roleEnvNames[role]) if (from[name] !== undefined) env[name] = from[name];
  return { ...env, ...set };
}
