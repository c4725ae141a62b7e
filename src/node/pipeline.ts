import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import type { AuditEntry } from "../ledger/chain.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import {
  contentsApiManifestSource,
  githubAppTokenSource,
  HttpSupervisorClient,
} from "../pipeline/clients.js";
import type { BuiltImage, MigrationAudit, ReleaseRegistrar, SignaturePolicy } from "../pipeline/deps.js";
import {
  DeployExecutor,
  type DeployRecord,
  type RegistryAccess,
  type TokenSource,
} from "../pipeline/executor.js";
import type { HostCredentials } from "../pipeline/git-credentials.js";
import { gitManifestSource } from "../pipeline/git-remote.js";
import { GITHUB_API_URL, redactUrl } from "../pipeline/github.js";
import type { DeployRequest, RosterView } from "../pipeline/plan.js";
import { DeliveryLedger, type PushEvent } from "../pipeline/webhooks.js";
import type { Store } from "../store/index.js";
import { SqlDeliveryLog, SqlDeployStore } from "./deploy-store.js";
import { type NodeSignatures, nodeImageSignatures } from "./image-signatures.js";
import { nodeOwner } from "./node-store.js";
import { DeployLock } from "./releases-lock.js";
import { type ReplayGuard, SqlReplayGuard } from "./replay-guard.js";

/**
 * The deploy pipeline as the node runs it: one persistent store of deploy records, the webhook
 * delivery ledger, and one executor per forge (GitHub and Forgejo differ in where tabbify.toml is
 * read and how a clone token is minted; everything else is shared).
 */

export interface NodePipelineOptions {
  /** The node's store (opened and closed by the caller). */
  store: Store;
  /** The node's data dir: names the node as the owner of the deploys it runs. */
  dataDir: string;
  coordinator: RosterCoordinator;
  /** Default https://api.github.com. */
  githubApiUrl?: string;
  /** A GitHub App: installation tokens for private repos. Absent ⇒ public repos, cloned anonymously. */
  githubApp?: { appId: string; privateKeyPem: string };
  /** Forgejo's API base, e.g. `https://forgejo.example/api/v1`. */
  forgejoApiUrl?: string;
  /** `FORGEJO_TOKEN`: an access token for Forgejo's contents API and clones (private repos). */
  forgejoToken?: string;
  /**
   * The password the builder clones the node's own push repositories (`/git/<app>.git`) with:
   * the node key, which only deploys of pushes (forge "node") ever hand out.
   */
  ownRepoToken?: string;
  /** Absent ⇒ every deploy fails REGISTRY_MISSING (fatal), as the pipeline defines. */
  registry?: RegistryAccess;
  /** `--git-credentials`: the node's user and password per git host that is no forge. */
  gitCredentials?: HostCredentials;
  /** verify_signature's policy per environment; images are signed and checked whenever `registry` is set. */
  signaturePolicies?: ReadonlyMap<string, SignaturePolicy>;
  /** The supervisors' API key, sent on every call to a supervisor on the roster. */
  supervisorKey?: string;
  /** Called with the app uuid once targets are deployed; throws when `/app/<uuid>` does not answer. */
  probeApp?: (appUuid: string) => Promise<void>;
  logger: Logger;
}

/** Where tabbify.toml is read and a clone token comes from: a forge's API, or git itself. */
export type ForgeKind = "github" | "forgejo" | "git" | "node";

/** What the node attaches once its releases and audit exist, after the pipeline opened. */
interface LateParts {
  releases?: ReleaseRegistrar;
  audit?: MigrationAudit;
}

export class NodePipeline {
  readonly store: SqlDeployStore;
  readonly deliveries: SqlDeliveryLog;
  readonly ledger: DeliveryLedger;
  /** Digests of every accepted signed webhook body: a replay under a fresh delivery id is a duplicate. */
  readonly replay: ReplayGuard;
  /** The store-held deploy lock every rollout of an (app, environment) takes, builds included. */
  readonly lock: DeployLock;
  /** The tenant build keys' verifier, which rollbacks and promotions check too; absent without a registry. */
  signatures: NodeSignatures | undefined;
  readonly #late: LateParts;
  readonly #executors: Record<ForgeKind, DeployExecutor>;
  readonly #forgejoHost: string | undefined;
  readonly #githubHosts: Set<string>;
  readonly #endListeners = new Set<(record: DeployRecord) => Promise<void>>();
  /** Per deploy under way: settles once it ended and every deploy-end listener ran (close waits on these). */
  readonly #finished = new Map<string, Promise<void>>();
  readonly #logger: Logger;

  private constructor(
    store: SqlDeployStore,
    deliveries: SqlDeliveryLog,
    ledger: DeliveryLedger,
    replay: ReplayGuard,
    lock: DeployLock,
    late: LateParts,
    executors: Record<ForgeKind, DeployExecutor>,
    forgejoHost: string | undefined,
    githubHosts: Set<string>,
    logger: Logger,
  ) {
    this.#githubHosts = githubHosts;
    this.store = store;
    this.deliveries = deliveries;
    this.ledger = ledger;
    this.replay = replay;
    this.lock = lock;
    this.#late = late;
    this.#executors = executors;
    this.#forgejoHost = forgejoHost;
    this.#logger = logger;
  }

  static async open(opts: NodePipelineOptions): Promise<NodePipeline> {
    const store = await SqlDeployStore.open(opts.store, { owner: nodeOwner(opts.dataDir) });
    const deliveries = await SqlDeliveryLog.open(opts.store);
    const ledger = await DeliveryLedger.open({ store: deliveries });
    const replay = await SqlReplayGuard.open(opts.store, opts.dataDir);
    const lock = new DeployLock(opts.store);
    const late: LateParts = {};
    const roster: RosterView = {
      supervisors: async () =>
        opts.coordinator.supervisors().map((s) => ({
          name: s.name,
          address: s.address,
          ula: s.ula,
          tags: s.tags,
        })),
    };
    const logger = opts.logger;
    const shared = {
      store,
      lock,
      releases: { register: async (built: BuiltImage) => late.releases?.register(built) },
      audit: { record: async (entry: AuditEntry) => late.audit?.record(entry) },
      roster,
      supervisorClient: (s: { address: string }) =>
        new HttpSupervisorClient({
          baseUrl: s.address,
          ...(opts.supervisorKey ? { authToken: opts.supervisorKey } : {}),
        }),
      ...(opts.registry
        ? {
            registry: opts.registry,
            signatures: nodeImageSignatures({
              registry: opts.registry,
              dataDir: opts.dataDir,
              ...(opts.signaturePolicies ? { policies: opts.signaturePolicies } : {}),
            }),
          }
        : {}),
      ...(opts.probeApp ? { probeApp: opts.probeApp } : {}),
      logger: logger.child("deploy"),
    };
    let githubTokens: TokenSource | undefined;
    if (opts.githubApp) {
      githubTokens = githubAppTokenSource(
        opts.githubApiUrl ?? GITHUB_API_URL,
        opts.githubApp.appId,
        opts.githubApp.privateKeyPem,
      );
    }
    const github = new DeployExecutor({
      ...shared,
      manifests: contentsApiManifestSource(opts.githubApiUrl ?? GITHUB_API_URL),
      ...(githubTokens ? { tokens: githubTokens } : {}),
    });
    let forgejoHost: string | undefined;
    let forgejo = github;
    if (opts.forgejoApiUrl) {
      forgejoHost = new URL(opts.forgejoApiUrl).host.toLowerCase();
      // Forgejo speaks GitHub's contents API shape under /api/v1; it has no App installations, so
      // private repositories are read with one standing access token.
      forgejo = new DeployExecutor({
        ...shared,
        manifests: contentsApiManifestSource(opts.forgejoApiUrl, "token"),
        ...(opts.forgejoToken ? { accessToken: opts.forgejoToken } : {}),
      });
    }
    // Any other host is read with git itself and cloned anonymously.
    const git = new DeployExecutor({
      ...shared,
      manifests: gitManifestSource(),
      ...(opts.gitCredentials ? { hostCredentials: opts.gitCredentials } : {}),
    });
    const node = new DeployExecutor({
      ...shared,
      manifests: gitManifestSource(),
      ...(opts.ownRepoToken ? { accessToken: opts.ownRepoToken } : {}),
    });
    const githubHosts = new Set([
      "github.com",
      new URL(opts.githubApiUrl ?? GITHUB_API_URL).host.toLowerCase(),
    ]);
    const pipeline = new NodePipeline(
      store,
      deliveries,
      ledger,
      replay,
      lock,
      late,
      { github, forgejo, git, node },
      forgejoHost,
      githubHosts,
      logger,
    );
    pipeline.signatures = shared.signatures;
    return pipeline;
  }

  /**
   * The forge a repository lives on: Forgejo when its host is FORGEJO_API_URL's, GitHub when it is
   * github.com or GITHUB_API_URL's, else plain git (ls-remote and a filtered fetch).
   */
  forgeOf(repoUrl: string): ForgeKind {
    let host: string;
    try {
      host = new URL(repoUrl).host.toLowerCase();
    } catch {
      return "git";
    }
    if (this.#forgejoHost !== undefined && host === this.#forgejoHost) return "forgejo";
    return this.#githubHosts.has(host) ? "github" : "git";
  }

  /** Records the deploy and runs it detached; resolves with its id as soon as the record exists. */
  async start(forge: ForgeKind, request: DeployRequest): Promise<string> {
    const { id, done } = await this.#executors[forge].start(request);
    const finished = done.then(
      async (record) => {
        this.#logger.info("deploy ended", {
          deploy_id: id,
          status: record.status,
          ...(record.error ? { code: record.error.code } : {}),
        });
        await Promise.all(
          [...this.#endListeners].map((listener) =>
            listener(record).catch((err: unknown) =>
              this.#logger.warn("a deploy-end listener failed", {
                deploy_id: id,
                error: err instanceof Error ? err.message : String(err),
              }),
            ),
          ),
        );
      },
      () => {},
    );
    this.#finished.set(id, finished);
    void finished.finally(() => this.#finished.delete(id));
    return id;
  }

  /**
   * Settles once deploy `id` ended and its deploy-end listeners (the app registry's record of
   * it, the audit) ran, so an answer given after it never names an app the registry lacks.
   */
  async ended(id: string): Promise<void> {
    await this.#finished.get(id);
  }

  /** Where builds are recorded as releases before any target gets them (the node's releases). */
  useReleases(registrar: ReleaseRegistrar): void {
    this.#late.releases = registrar;
  }

  /** Where the deploys' migrations are audited (the node's audit chain, attached after the pipeline). */
  useAudit(audit: MigrationAudit): void {
    this.#late.audit = audit;
  }

  /** Calls `listener` with the final record of every deploy started here once it ends. */
  onDeployEnded(listener: (record: DeployRecord) => Promise<void>): void {
    this.#endListeners.add(listener);
  }

  /**
   * The branch a push's repository deploys from per its tabbify.toml at the pushed commit, or
   * undefined (the default branch) when it names none or cannot be read within `timeoutMs`: GitHub
   * gives a delivery 10 s, and an unreadable manifest is reported by the deploy itself.
   */
  async configuredBranch(forge: ForgeKind, event: PushEvent, timeoutMs = 5_000): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([
        this.#executors[forge].manifestBranch(NodePipeline.pushRequest(event)),
        timeout,
      ]);
    } catch (err) {
      this.#logger.warn("tabbify.toml not read for the branch check; using the default branch", {
        delivery_id: event.deliveryId,
        repo: event.fullName,
        error: redactUrl(err instanceof Error ? err.message : String(err)),
      });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A push as a deploy request: the pushed sha, the owner as tenant (lowercased). */
  static pushRequest(event: PushEvent): DeployRequest {
    const owner = event.fullName.split("/")[0] ?? "";
    if (owner === "") throw new TabbifyError("WEBHOOK_PAYLOAD_INVALID", "repository.full_name has no owner");
    const request: DeployRequest = {
      trigger: event.source,
      repoUrl: event.repoUrl,
      ref: event.sha,
      sha: event.sha,
      tenant: owner.toLowerCase(),
      deliveryId: event.deliveryId,
    };
    if (event.installationId !== undefined) request.installationId = event.installationId;
    return request;
  }

  /** Waits for running deploys (bounded); the store is the caller's to close after. */
  async close(waitMs = 2_000): Promise<void> {
    await Promise.race([Promise.allSettled([...this.#finished.values()]), sleep(waitMs, { unref: true })]);
    await this.store.close();
    await this.replay.close();
  }
}
