import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import type { DeployRecord, DeployStore } from "../pipeline/executor.js";
import { isTerminalEvent } from "../pipeline/executor.js";
import type { DeployRequest } from "../pipeline/plan.js";
import type { AppRegistry } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";

/**
 * Deploys in the audit chain: `deploy.accepted` (who started it, from which trigger or webhook
 * delivery), then once it ends one `deploy.target` per target result and `deploy.finished`. The
 * app a deploy resolved to is registered on first sight, as created by the deploy's actor.
 * That record is one of the pipeline's deploy-end tasks, so whoever waits for a deploy's end
 * (`git push`, `NodePipeline.ended`) never sees it before the app is in the registry.
 */

export interface DeployObserver {
  /** Called once a deploy record exists; `actor` comes from the request's identity. */
  accepted(actor: string, id: string, request: DeployRequest): Promise<void>;
}

export class DeployAuditor implements DeployObserver {
  readonly #audit: AuditLog;
  readonly #registry: AppRegistry;
  readonly #deploys: Pick<DeployStore, "get" | "subscribe">;
  readonly #logger: Logger;
  /** Each accepted deploy's end record under way, and how to tell it the deploy ended, by id. */
  readonly #pending = new Map<string, { done: Promise<void>; ended: () => void }>();

  constructor(opts: {
    audit: AuditLog;
    registry: AppRegistry;
    deploys: Pick<DeployStore, "get" | "subscribe">;
    logger: Logger;
    /** Where the end record joins the deploy's end tasks (the node's pipeline). */
    endTasks?: { onDeployEnded(listener: (record: { id: string }) => Promise<void>): void };
  }) {
    this.#audit = opts.audit;
    this.#registry = opts.registry;
    this.#deploys = opts.deploys;
    this.#logger = opts.logger;
    opts.endTasks?.onDeployEnded(async (record) => {
      const pending = this.#pending.get(record.id);
      if (!pending) return;
      pending.ended();
      await pending.done;
    });
  }

  async accepted(actor: string, id: string, request: DeployRequest): Promise<void> {
    // Registered before any await: the deploy runs meanwhile, and its end listeners look it up.
    let acceptedRecorded!: () => void;
    const recorded = new Promise<void>((resolve) => {
      acceptedRecorded = resolve;
    });
    let ended!: () => void;
    const endedSignal = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const done = recorded
      .then(() => this.#followToEnd(actor, id, endedSignal))
      .catch((err: unknown) =>
        this.#logger.warn("auditing a deploy's end failed", {
          deploy_id: id,
          error: err instanceof Error ? err.message : String(err),
        }),
      );
    this.#pending.set(id, { done, ended });
    void done.finally(() => this.#pending.delete(id));
    const after: Record<string, unknown> = {
      trigger: request.trigger,
      repo_url: request.repoUrl,
      ref: request.ref,
      tenant: request.tenant,
    };
    if (request.sha) after.sha = request.sha;
    if (request.appUuid) after.app_uuid = request.appUuid;
    if (request.deliveryId) after.delivery_id = request.deliveryId;
    if (request.targets) after.targets = request.targets;
    try {
      await this.#audit.record({ actor, action: "deploy.accepted", subject: `deploy:${id}`, after });
    } finally {
      // deploy.accepted precedes the end's rows in the chain; a failed write still records the end.
      acceptedRecorded();
    }
  }

  /**
   * Waits for the deploy's terminal event, or for the pipeline saying it ended (a crashed deploy
   * closes its record without one), then records the end.
   */
  async #followToEnd(actor: string, id: string, endedSignal: Promise<void>): Promise<void> {
    let finish!: () => void;
    const terminal = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const stop = await this.#deploys.subscribe(id, 0, (event) => {
      if (isTerminalEvent(event)) finish();
    });
    try {
      await Promise.race([terminal, endedSignal]);
    } finally {
      stop();
    }
    const record = await this.#deploys.get(id);
    if (record) await this.#recordEnd(actor, record);
  }

  async #recordEnd(actor: string, record: DeployRecord): Promise<void> {
    const subject = `deploy:${record.id}`;
    if (record.app_uuid) {
      // tabbify.toml's [app].name, as the fetch_manifest step reported it, names the entry.
      const named = record.events.find((e) => typeof e.data?.app_name === "string")?.data?.app_name;
      await this.#registry.ensure(actor, {
        uuid: record.app_uuid,
        tenant: record.request.tenant,
        repo_url: record.request.repoUrl,
        ...(typeof named === "string" ? { name: named } : {}),
      });
    }
    for (const result of record.results) {
      await this.#audit.record({ actor: "system", action: "deploy.target", subject, after: { ...result } });
    }
    const after: Record<string, unknown> = { status: record.status };
    if (record.app_uuid) after.app_uuid = record.app_uuid;
    if (record.image_ref) after.image_ref = record.image_ref;
    if (record.digest) after.digest = record.digest;
    if (record.error) after.error = record.error;
    await this.#audit.record({ actor: "system", action: "deploy.finished", subject, after });
  }

  /** The app uuids of the accepted deploys whose end is not recorded yet (as far as they know one). */
  async appsInFlight(): Promise<Set<string>> {
    const uuids = new Set<string>();
    for (const id of [...this.#pending.keys()]) {
      const record = await this.#deploys.get(id).catch(() => undefined);
      if (record?.app_uuid) uuids.add(record.app_uuid);
      else if (record?.request.appUuid) uuids.add(record.request.appUuid);
    }
    return uuids;
  }

  /** Waits (bounded) for ends being recorded, so a clean shutdown does not cut one short. */
  async close(waitMs = 2_000): Promise<void> {
    await Promise.race([
      Promise.allSettled([...this.#pending.values()].map((p) => p.done)),
      sleep(waitMs, { unref: true }),
    ]);
  }
}
