import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { contractLabels } from "../contract/labels.js";
import type { ProofRow } from "../contract/ledger.js";
import type { Contract } from "../contract/types.js";
import { TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { PeerInfo } from "../mesh/roster.js";
import type { RegistryAccess } from "../pipeline/deps.js";
import { DEFAULT_ENVIRONMENT } from "../pipeline/plan.js";
import type { DeploySessionsTable } from "../store/tables/deploy-review.js";
import { SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import type { DeployReviewStore } from "./deploy-review-store.js";
import { pushHandlerArtifact, pushProofReferrer, type RegistryTarget } from "./handler-artifact.js";
import type { NodeSignatures } from "./image-signatures.js";
import { pushReleaseArtifact } from "./releases-oci.js";
import type { ReleaseStore } from "./releases-store.js";

/**
 * Turns an uploaded handler bundle into a process app on the region's supervisor, through the
 * platform registry: the bundle becomes an OCI artifact in the tenant's repository
 * (`<tenant>/<app uuid>`, tagged `deploy-<session id>`) with the contract's labels as manifest
 * annotations, signed with the tenant's build key; the supervisor pulls it by digest with a pull
 * token of its own, so it may run on any host. The node keeps no copy. The command, the
 * platform's handler host (the supervisor's own, so the handler cannot replace it) and the
 * contract's lists are the platform's, never the upload's; the workload gets only the contract's
 * env names (every name when env is dynamic) and, unless egress is dynamic, reaches out only
 * through its runner's egress proxy. A started deploy records a release of that digest, and the
 * release manifest and later the proof row are pushed as referrers of the artifact.
 */

export interface HandlerReleaserOptions {
  reviews: DeployReviewStore;
  coordinator: RosterCoordinator;
  dataDir: string;
  supervisorKey: string | undefined;
  /** The platform registry; without one, handler deploys are refused (REGISTRY_REQUIRED). */
  registry?: RegistryAccess | undefined;
  releases?: ReleaseStore | undefined;
  signatures?: NodeSignatures | undefined;
  /** Default `http://<registry host>`. */
  registryUrl?: string | undefined;
}

/** The env a handler workload gets: the contract's names from `env`, then the contract's lists. */
export function workloadEnvFor(contract: Contract, env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const names = contract.env.dynamic ? Object.keys(env) : contract.env.literal;
  for (const name of names) {
    if (name.startsWith("TABBIFY_CONTRACT_")) continue;
    const v = env[name];
    if (v !== undefined) out[name] = v;
  }
  out.TABBIFY_CONTRACT_EGRESS = contract.egress.dynamic ? "*" : contract.egress.hosts.join(",");
  out.TABBIFY_CONTRACT_CACHE = contract.cache.dynamic ? "*" : contract.cache.namespaces.join(",");
  return out;
}

export class HandlerReleaser {
  readonly #inFlight = new Set<Promise<void>>();
  readonly #closing = new AbortController();

  constructor(private readonly opts: HandlerReleaserOptions) {}

  /** A supervisor running process apps: `default` is the first by name; else by name or tag. */
  supervisorFor(region: string): PeerInfo {
    const all = this.opts.coordinator
      .supervisors()
      .filter((s) => s.tags.includes("process"))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const hit = region === "default" ? all[0] : all.find((s) => s.name === region || s.tags.includes(region));
    if (!hit) {
      const known = all.map((s) => s.name).join(", ") || "none on the roster";
      throw new TabbifyError(
        "REGION_UNKNOWN",
        `no supervisor for region "${region}" (regions: default, ${known})`,
      );
    }
    return hit;
  }

  #registry(): RegistryAccess {
    const registry = this.opts.registry;
    if (!registry) {
      throw new TabbifyError(
        "REGISTRY_REQUIRED",
        "handler deploys go through the platform registry: start the node with --registry (and --auth-data)",
      );
    }
    return registry;
  }

  #target(session: DeploySessionsTable, token: string): RegistryTarget {
    const registry = this.#registry();
    return {
      registryUrl: this.opts.registryUrl ?? `http://${registry.host}`,
      repository: `${session.scope.toLowerCase()}/${session.app_uuid.toLowerCase()}`,
      token,
    };
  }

  /** Whether handler deploys can run at all (a node without a registry refuses them up front). */
  requireRegistry(): void {
    this.#registry();
  }

  /**
   * Streams the bundle to a temp file (never whole in memory), pushes it as the handler artifact
   * and signs it; returns the artifact's manifest digest. The temp file is gone either way.
   */
  async receiveBundle(
    session: DeploySessionsTable,
    body: NodeJS.ReadableStream,
    limit: number,
  ): Promise<string> {
    const registry = this.#registry();
    const dir = join(this.opts.dataDir, "handler-uploads");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${session.id}.mjs`);
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > limit)
          return done(new TabbifyError("PAYLOAD_TOO_LARGE", `the bundle is over ${limit} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(file, { mode: 0o600 }));
      if (size === 0) throw new TabbifyError("BAD_REQUEST", "the bundle is empty");
      const target = this.#target(session, await registry.pushToken(session.scope, session.app_uuid));
      const contract = JSON.parse(session.contract) as Contract;
      const pushed = await pushHandlerArtifact(
        target,
        { path: file, digest: `sha256:${hash.digest("hex")}`, size },
        contractLabels(contract, session.contract_sha),
        `deploy-${session.id}`,
      );
      await this.opts.signatures?.sign(session.scope, session.app_uuid, pushed.digest);
      return pushed.digest;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** The proof row as a referrer of the session's artifact; returns the referrer's digest. */
  async pushProof(session: DeploySessionsTable, row: ProofRow): Promise<string> {
    if (!session.digest)
      throw new TabbifyError("SESSION_CONFLICT", `deploy session ${session.id} has no bundle`);
    const registry = this.#registry();
    const target = this.#target(session, await registry.pushToken(session.scope, session.app_uuid));
    return pushProofReferrer(target, session.digest, row);
  }

  /** Starts the session's app in the background; the session's state says how it went. */
  release(session: DeploySessionsTable, env: Record<string, string>): void {
    const run = this.#run(session, env)
      .catch(async (err: unknown) => {
        const detail = err instanceof Error ? err.message : String(err);
        await this.opts.reviews.setSessionState(session.id, "failed", detail.slice(0, 2000)).catch(() => {});
      })
      .finally(() => this.#inFlight.delete(run));
    this.#inFlight.add(run);
  }

  /** Waits for releases still writing into the data dir, so closing the node leaves it quiet. */
  async drain(): Promise<void> {
    this.#closing.abort(new Error("the node is closing"));
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  async #run(session: DeploySessionsTable, env: Record<string, string>): Promise<void> {
    const registry = this.#registry();
    const digest = session.digest;
    if (!digest) throw new TabbifyError("SESSION_CONFLICT", `deploy session ${session.id} has no bundle`);
    const contract = JSON.parse(session.contract) as Contract;
    const supervisor = this.supervisorFor(session.region);
    const pullToken = await (registry.pullToken ?? registry.pushToken)(session.scope, session.app_uuid);
    const pull = this.#target(session, pullToken);
    const api = new SupervisorApi({ baseUrl: supervisor.address, authToken: this.opts.supervisorKey });
    try {
      await api.deploy(
        session.app_uuid,
        {
          runtime: "process",
          handler_artifact: { registry_url: pull.registryUrl, repository: pull.repository, digest },
          registry_token: pull.token,
          env: workloadEnvFor(contract, env),
          ...(contract.egress.dynamic ? {} : { egress: { allow: contract.egress.hosts } }),
        },
        { timeoutMs: 8 * 60_000, signal: this.#closing.signal },
      );
    } catch (err) {
      const refused = supervisorRefusal(err);
      if (!refused || !(err instanceof Error)) throw err;
      const tail = refused.runner_log_tail !== undefined ? `\n${refused.runner_log_tail.slice(-1500)}` : "";
      await this.opts.reviews.setSessionState(
        session.id,
        "failed",
        `${supervisor.name}: ${err.message}${tail}`,
      );
      return;
    }
    const release = await this.#recordRelease(session, digest);
    await this.opts.reviews.setSessionState(
      session.id,
      "ready",
      `running on ${supervisor.name}${release ? ` (release ${release})` : ""}`,
    );
  }

  /** The release of this digest, run in the default environment, its manifest a referrer. */
  async #recordRelease(session: DeploySessionsTable, digest: string): Promise<string | undefined> {
    const releases = this.opts.releases;
    if (!releases) return undefined;
    const registry = this.#registry();
    const source = { artifact_version: `deploy-${session.id}` };
    const target = this.#target(session, await registry.pushToken(session.scope, session.app_uuid));
    const { release } = await releases.record({
      app: session.app_uuid,
      digest,
      source,
      manifest: {
        app: session.app_uuid,
        digest,
        image: `${registry.host}/${target.repository}@${digest}`,
        source,
        contract: { sha: session.contract_sha, project: session.project, region: session.region },
      },
      created_by: `deploy-session:${session.id}`,
    });
    await releases.markRunning(release, DEFAULT_ENVIRONMENT, "system", "release.deploy", {
      session_id: session.id,
    });
    if (this.opts.signatures) {
      await this.opts.signatures.signRelease(session.scope, session.app_uuid, release);
    } else {
      await pushReleaseArtifact(
        {
          registryUrl: target.registryUrl,
          repository: target.repository,
          imageDigest: digest,
          token: target.token,
        },
        release,
      );
    }
    return release.id;
  }
}
