import { nodeKey, nodeKeyOrTenant } from "./common.js";

/**
 * Route descriptions for the node's env, deploy history, handler deploys (sessions, plans,
 * grants, proofs), device login, registry events and platform upgrades. These routes check their
 * caller inside the handler before reading the body, and their bodies are checked there (plain
 * JSON, OAuth forms, Distribution envelopes, tarball streams), so the schemas document them
 * without a validating body: validating first would answer a stranger's bad body before asking
 * who they are.
 */
type Security = { [scheme: string]: string[] }[];

function described(summary: string, tag: string, security: Security | undefined, description?: string) {
  return {
    summary,
    tags: [tag],
    ...(security ? { security } : {}),
    ...(description ? { description } : {}),
  };
}

const none: Security = [];
const supervisorKey: Security = [{ supervisorKey: [] }];
const sessionToken: Security = [{ sessionToken: [] }];
const eventsToken: Security = [{ registryEventsToken: [] }];

export const envSchemas = {
  list: described(
    "The app's env var names (values only with ?reveal=1 and the node key)",
    "env",
    nodeKeyOrTenant,
  ),
  change: described(
    "Set and unset the app's env vars, then restart it onto them unless restart is false",
    "env",
    nodeKeyOrTenant,
    'Body: {"env"?: name, "set"?: {KEY: value}, "unset"?: [KEY], "restart"?: bool}. Values are never echoed.',
  ),
  forSupervisor: described(
    "Internal: an app's env values, for the supervisor to merge into the runner's copy at spawn",
    "env",
    supervisorKey,
  ),
};

export const historySchemas = {
  deploys: described("The app's recent deploys, newest first (?limit, 1-200)", "deploys", nodeKeyOrTenant),
  log: described(
    "A deploy's stored events as text, one line each (id or `latest`)",
    "deploys",
    nodeKeyOrTenant,
  ),
  environments: described(
    "The app's environments in order, each with the release it runs and what it ran before (newest first)",
    "releases",
    nodeKeyOrTenant,
  ),
};

export const gcRootsSchema = described(
  "Digests a registry garbage collection must keep: running, promotable and the last N releases",
  "registry",
  eventsToken,
);

export const registryEventsSchema = described(
  "Registry notifications (Distribution's envelope): manifest pushes and deletes join the audit chain",
  "registry",
  eventsToken,
);

export const reviewSchemas = {
  plan: described("A handler deploy's review plan: reasons, coverage, state", "review", nodeKeyOrTenant),
  approve: described(
    'Approve a plan once or as a grant ({"mode": "once"|"grant"}); 409 when decided, 410 when expired',
    "review",
    nodeKeyOrTenant,
  ),
  reject: described("Reject a plan", "review", nodeKeyOrTenant),
  grants: described("Your tenant's active grants", "review", nodeKeyOrTenant),
  projectGrants: described("A project's active grants", "review", nodeKeyOrTenant),
  revoke: described("Revoke a grant", "review", nodeKeyOrTenant),
  policy: described("Which risky reasons need review, per tenant", "review", nodeKeyOrTenant),
  setPolicy: described(
    "Set which risky reasons need review (node key: any tenant)",
    "review",
    nodeKeyOrTenant,
  ),
};

export const sessionSchemas = {
  open: described(
    "Open a handler deploy: 200 with a short-lived session credential, or 202 plan_required",
    "handler deploys",
    nodeKeyOrTenant,
    "Body: {projectName, region?, contract, contractSha256, planId?}.",
  ),
  bundle: described("Upload the session's bundle (streamed, size-capped)", "handler deploys", sessionToken),
  release: described(
    "Start the uploaded bundle as the project's new release",
    "handler deploys",
    sessionToken,
  ),
  status: described("A session's state: upload, rollout, readiness", "handler deploys", sessionToken),
  proof: described(
    "Record the deploy's proof row (contract-derived fields only)",
    "handler deploys",
    sessionToken,
  ),
  proofs: described("A project's proof rows, oldest first", "handler deploys", nodeKeyOrTenant),
};

export const deviceLoginSchemas = {
  start: described(
    "Device login (RFC 8628): a device code, a user code and where to approve it",
    "device login",
    none,
  ),
  token: described(
    "Poll for the device's token (OAuth errors: authorization_pending, slow_down, expired_token, access_denied)",
    "device login",
    none,
    "Form or JSON: grant_type=urn:ietf:params:oauth:grant-type:device_code, device_code.",
  ),
  approvePage: described("What approving a user code means, for a person at a browser", "device login", none),
  approve: described("Approve a waiting device's user code", "device login", nodeKeyOrTenant),
  deny: described("Deny a waiting device's user code", "device login", nodeKeyOrTenant),
};

export const upgradeSchemas = {
  start: described(
    "Upgrade every role of a `tabbify up` platform to a packed release, with handoffs",
    "platform",
    nodeKey,
  ),
  status: described("A platform upgrade's recorded outcome", "platform", nodeKey),
};
