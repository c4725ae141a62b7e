import type { Logger } from "../core/log.js";
import type { AuditEntry } from "../ledger/chain.js";
import type { DeployStore } from "./executor.js";
import type { HostCredentials } from "./git-credentials.js";
import type { RosterSupervisor, RosterView } from "./plan.js";
import type { ReleaseDeclarations } from "./release-declarations.js";

/**
 * What the executor's steps talk to: the supervisor, registry, roster and forge are reached
 * through these interfaces, so the node wires real HTTP clients (see clients.ts) and tests wire
 * stand-ins.
 */

/** GitHub App (or another forge's) installation tokens; absent when no App is configured. */
export interface TokenSource {
  installationToken(installationId: number): Promise<{ token: string; expires_at: string }>;
  /**
   * The installation covering a repository, for deploys that name none (`POST /v1/deploy`);
   * undefined when the App is not installed there.
   */
  installationFor?(repoUrl: string): Promise<number | undefined>;
}

/** Reads tabbify.toml of a repository at a ref; null when the file does not exist. */
export interface ManifestSource {
  fetchManifest(
    repoUrl: string,
    ref: string,
    token: string | undefined,
    username?: string,
  ): Promise<string | null>;
}

/** Our registry as the pipeline needs it: where images go, and tokens scoped to one repository. */
export interface RegistryAccess {
  /** `host[:port]` the builder pushes to and targets pull from. */
  host: string;
  /** A token allowed to push (and pull) `<tenant>/<appUuid>`. */
  pushToken(tenant: string, appUuid: string): Promise<string>;
  /** A token allowed to pull `<tenant>/<appUuid>`; absent when targets pull anonymously. */
  pullToken?(tenant: string, appUuid: string): Promise<string>;
}

/** What `verify_signature` does with an image that carries no trusted signature. */
export type SignaturePolicy = "require" | "warn";

/**
 * The tenant build keys: signing what a builder pushed, and verifying an image against the
 * tenant's trusted keys before a target switches to it. Keys never leave the node.
 */
export interface ImageSignatures {
  /** Signs `<tenant>/<appUuid>@digest` with the tenant's build key; returns the signature's digest. */
  sign(tenant: string, appUuid: string, digest: string): Promise<string>;
  /** Throws SIGNATURE_INVALID unless a trusted key of the tenant signed the digest. */
  verify(tenant: string, appUuid: string, digest: string): Promise<string>;
  /** The environment's policy: `require` or `warn`. */
  policy(environment: string): SignaturePolicy;
}

/** `POST /v1/build` on a builder supervisor. */
export interface BuildRequest {
  repo_url: string;
  ref: string;
  tenant: string;
  app_uuid: string;
  /** Registry `host[:port]`. */
  registry: string;
  /** Where the image goes, without tag: `<registry>/<tenant lowercased>/<app_uuid>`; the tag is the commit sha. */
  image_repository: string;
  clone_token?: string;
  /** The user `clone_token` goes with; default `x-access-token` (forge tokens). */
  clone_username?: string;
  push_token?: string;
  build_kind: "docker";
  context: string;
  dockerfile: string;
  stable_tag?: string;
  manifest_toml?: string;
}

export interface BuildResult {
  /** `<registry>/<tenant>/<uuid>:<commit sha>` as pushed. */
  image_ref: string;
  /** Manifest digest the registry stored, `sha256:…`. */
  digest: string;
  /** The commit actually built (HEAD after checkout), 40 hex. */
  commit_sha: string;
}

/** `POST /v1/apps/<uuid>/deploy` on a target supervisor. */
export interface SupervisorDeployRequest {
  /** The pinned image; absent for an artifact release (`artifact_version`). */
  ref?: string;
  digest?: string;
  /** Absent for an artifact release: its stored manifest names the runtime. */
  runtime?: string;
  /** `v<N>` of the artifact store: a `tcli push` release. */
  artifact_version?: string;
  /** The app uuid the store holds `artifact_version` under (the target may run it as an environment's). */
  artifact_app?: string;
  /** The environment the target runs; a prod target refuses anything but a pinned ref. */
  environment?: string;
  /** The app's declared probes, checked on the new workload before it takes requests. */
  probes?: { healthz?: string; ready?: string; version?: string; expect?: string[] };
  env?: Record<string, string>;
  manifest_toml?: string;
  registry_token?: string;
  /** tabbify.toml's [runtime] keys, as the supervisor's spec fields. */
  limits?: { memory_mb: number; vcpus?: number };
  lifecycle?: { mode: "always_on" | "on_request"; idle_timeout_sec: number };
  stateful?: boolean;
  data_mount?: string;
  /** The release being rolled: the workload gets TABBIFY_RELEASE and a read-only manifest copy. */
  release?: { id: string; manifest: Record<string, unknown> };
}

export interface SupervisorDeployReply {
  state: string;
  app_ula: string;
  bound_addr?: string | null;
}

/** `GET /v1/apps/<uuid>`: what the runner reports it runs. */
export interface SupervisorAppStatus {
  state: string;
  app_ula: string;
  image_ref?: string;
  /** Digest of the image the runner's workload runs. */
  digest?: string;
  /** `v<N>` when it runs an artifact store version (a pushed release). */
  artifact_version?: string;
}

export interface SupervisorClient {
  /** Builds and pushes; `onLog` receives build output lines as they are known. Throws on failure. */
  build(request: BuildRequest, onLog: (line: string) => void): Promise<BuildResult>;
  deploy(appUuid: string, request: SupervisorDeployRequest): Promise<SupervisorDeployReply>;
  /** null when the supervisor has no such app. */
  app(appUuid: string): Promise<SupervisorAppStatus | null>;
  /** Runs the release's migration (the deploy body's release, `command` in place of the app's). */
  migrate?(
    appUuid: string,
    request: SupervisorDeployRequest,
    command: string[],
  ): Promise<SupervisorMigrateReply>;
}

/** `POST /v1/apps/<uuid>/migrate`: how the command ended and its last lines (env values cut out). */
export interface SupervisorMigrateReply {
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  duration_ms: number;
  log_tail: string[];
  /** `oom`: the app's memory_mb limit killed it. */
  limit_reason?: "oom";
}

/** Where a migration's audit rows go (the node's hash-chained audit log). */
export interface MigrationAudit {
  record(entry: AuditEntry): Promise<unknown>;
}

export interface PipelineDeps {
  store: DeployStore;
  roster: RosterView;
  supervisorClient(supervisor: RosterSupervisor): SupervisorClient;
  manifests: ManifestSource;
  tokens?: TokenSource;
  /**
   * A standing access token for forges without App installations (Forgejo's `FORGEJO_TOKEN`):
   * used as is for the contents API and as the clone password. Wins over `tokens`.
   */
  accessToken?: string;
  /** The node's credentials for git hosts that are no forge (`--git-credentials`). */
  hostCredentials?: HostCredentials;
  registry?: RegistryAccess;
  /** Signing and verification; absent ⇒ images are neither signed nor checked (stand-in registries). */
  signatures?: ImageSignatures;
  /** Checks that `/app/<uuid>` answers through the node; throws with a reason when it does not. */
  probeApp?(appUuid: string): Promise<void>;
  logger?: Logger;
  newId?: () => string;
  now?: () => Date;
  /** Log events kept per deploy before the rest are summarised in one line. Default 5000. */
  maxLogEvents?: number;
  /** Serializes rollouts per (app, environment); absent ⇒ deploys of one app may overlap. */
  lock?: RolloutLock;
  /** Records the built image as a release before any target gets it (the node's ReleaseStore). */
  releases?: ReleaseRegistrar;
  /** The audit chain migrations are recorded in (migration.ts); absent ⇒ not audited. */
  audit?: MigrationAudit;
}

/** What the pipeline knows of a build when it records it as a release. */
export interface BuiltImage {
  app_uuid: string;
  tenant: string;
  /** `<registry>/<tenant>/<uuid>@sha256:…`. */
  image: string;
  digest: string;
  repo_url: string;
  commit_sha: string;
  builder: string;
  started_at: string;
  finished_at: string;
  deploy_id: string;
  /** What tabbify.toml declares for rollouts (probes, environments, migrate), kept with the release. */
  declarations?: ReleaseDeclarations;
}

export interface ReleaseRegistrar {
  /**
   * The release for this image (the existing one when the digest is known): its id and manifest;
   * undefined when releases are not kept.
   */
  register(built: BuiltImage): Promise<{ id: string; manifest: Record<string, unknown> } | undefined>;
}

/** Who holds an (app, environment)'s deploy lock, or is next in its queue. */
export interface RolloutLockHolder {
  holder: string;
  deploy_id: string | null;
  since: string;
}

/** The store-held deploy lock (the node's DeployLock), as the pipeline's acquire_lock step takes it. */
export interface RolloutLock {
  acquire(
    app: string,
    environment: string,
    deployId: string,
    holder: string,
    opts: { wait: boolean; onQueued?: (held: RolloutLockHolder) => Promise<void> },
  ): Promise<{ queued_ms: number }>;
  release(app: string, environment: string, deployId: string): Promise<void>;
}
