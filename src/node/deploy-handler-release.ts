import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { contractLabels } from "../contract/labels.js";
import type { Contract } from "../contract/types.js";
import { TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { PeerInfo } from "../mesh/roster.js";
import type { DeploySessionsTable } from "../store/tables/deploy-review.js";
import type { DeployReviewStore } from "./deploy-review-store.js";

/**
 * Turns an uploaded handler bundle into a process app on the region's supervisor. The app dir is
 * `<data>/handler-apps/<app uuid>/<session id>/`: the bundle (`handler.mjs`) next to the
 * platform's handler host (copied from this install, so the handler cannot replace it). The
 * command and the contract's lists are the node's, never the upload's; the workload gets only the
 * contract's env names (every name when env is dynamic).
 */

export interface HandlerReleaserOptions {
  reviews: DeployReviewStore;
  coordinator: RosterCoordinator;
  dataDir: string;
  supervisorKey: string | undefined;
}

const here = dirname(fileURLToPath(import.meta.url));
const HOST_FILES = [
  [join(here, "..", "main", "handler-host.js"), join("host", "main", "handler-host.js")],
  [join(here, "..", "contract", "handler-host.js"), join("host", "contract", "handler-host.js")],
] as const;

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

  appDir(session: DeploySessionsTable): string {
    return join(this.opts.dataDir, "handler-apps", session.app_uuid, session.id);
  }

  /** Streams the bundle to disk (never whole in memory) and returns its sha256. */
  async receiveBundle(
    session: DeploySessionsTable,
    body: NodeJS.ReadableStream,
    limit: number,
  ): Promise<string> {
    const dir = this.appDir(session);
    await mkdir(dir, { recursive: true, mode: 0o700 });
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
      await pipeline(body, meter, createWriteStream(join(dir, "handler.mjs"), { mode: 0o600 }));
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    if (size === 0) throw new TabbifyError("BAD_REQUEST", "the bundle is empty");
    return `sha256:${hash.digest("hex")}`;
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
    const dir = this.appDir(session);
    for (const [from, to] of HOST_FILES) {
      await mkdir(dirname(join(dir, to)), { recursive: true, mode: 0o700 });
      await copyFile(from, join(dir, to));
    }
    await writeFile(join(dir, "package.json"), `${JSON.stringify({ type: "module", private: true })}\n`, {
      mode: 0o600,
    });
    const contract = JSON.parse(session.contract) as Contract;
    await writeFile(
      join(dir, "contract-labels.json"),
      `${JSON.stringify(contractLabels(contract, session.contract_sha), null, 2)}\n`,
      { mode: 0o600 },
    );
    const supervisor = this.supervisorFor(session.region);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.opts.supervisorKey) headers.authorization = `Bearer ${this.opts.supervisorKey}`;
    const res = await fetch(`${supervisor.address.replace(/\/+$/, "")}/v1/apps/${session.app_uuid}/deploy`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        runtime: "process",
        artifact_dir: dir,
        command: [process.execPath, join("host", "main", "handler-host.js"), "handler.mjs"],
        env: workloadEnvFor(contract, env),
      }),
      signal: AbortSignal.any([AbortSignal.timeout(8 * 60_000), this.#closing.signal]),
    });
    const answer = (await res.json().catch(() => ({}))) as { error?: unknown; runner_log_tail?: unknown };
    if (!res.ok) {
      const why = typeof answer.error === "string" ? answer.error : `HTTP ${res.status}`;
      const tail =
        typeof answer.runner_log_tail === "string" ? `\n${answer.runner_log_tail.slice(-1500)}` : "";
      await this.opts.reviews.setSessionState(session.id, "failed", `${supervisor.name}: ${why}${tail}`);
      return;
    }
    await this.opts.reviews.setSessionState(session.id, "ready", `running on ${supervisor.name}`);
  }
}
