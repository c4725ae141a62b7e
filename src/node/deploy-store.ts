import type { Selectable } from "kysely";
import { TabbifyError } from "../core/errors.js";
import type {
  DeployEvent,
  DeployRecord,
  DeployRecordPatch,
  DeployStore,
  EventListener,
} from "../pipeline/executor.js";
import { DeployEventFanout } from "../pipeline/executor.js";
import type { DeliveryStore } from "../pipeline/webhooks.js";
import type { Store, StoreTransaction } from "../store/index.js";
import type { DeployEventsTable, DeploysTable } from "../store/tables/deploys.js";

/**
 * Deploy records, their events and webhook deliveries in the node's store (SQLite or Postgres).
 * Each method is one statement or one transaction, committed before it resolves: a killed node
 * loses nothing it acknowledged and leaves no half-written record.
 *
 * Live events reach subscribers of this process through a fanout published after each commit;
 * `subscribe` replays from the store, so a client that reconnects resumes where it left off.
 */

export interface SqlDeployStoreOptions {
  /** Deploys kept; the oldest finished ones beyond it are deleted at open. Default 1000. */
  capacity?: number;
  /** Who runs deploys started here (see DeploysTable.owner). */
  owner: string;
  now?: () => Date;
}

const RESTARTED = {
  code: "NODE_RESTARTED",
  message: "the node stopped while this deploy ran; start it again",
  step: "deploy" as const,
};

function notFound(id: string): TabbifyError {
  return new TabbifyError("DEPLOY_NOT_FOUND", `deploy ${id.slice(0, 64)} is unknown`);
}

const json = (value: unknown): string => JSON.stringify(value);

function eventRow(event: DeployEvent): DeployEventsTable {
  return {
    deploy_id: event.deploy_id,
    seq: event.seq,
    ts: event.ts,
    step: event.step,
    type: event.type,
    message: event.message ?? null,
    data: event.data === undefined ? null : json(event.data),
  };
}

function eventOf(row: Selectable<DeployEventsTable>): DeployEvent {
  const event = {
    seq: Number(row.seq),
    ts: row.ts,
    deploy_id: row.deploy_id,
    step: row.step,
    type: row.type,
  } as DeployEvent;
  if (row.message !== null) event.message = row.message;
  if (row.data !== null) event.data = JSON.parse(row.data) as Record<string, unknown>;
  return event;
}

/** A deploy record as its table row (events live in their own table). */
export function deployRow(record: Omit<DeployRecord, "events">, owner: string): DeploysTable {
  return {
    id: record.id,
    status: record.status,
    created_at: record.created_at,
    finished_at: record.finished_at ?? null,
    app_uuid: record.app_uuid ?? null,
    image_ref: record.image_ref ?? null,
    digest: record.digest ?? null,
    request: json(record.request),
    results: json(record.results),
    error: record.error === undefined ? null : json(record.error),
    owner,
  };
}

function recordOf(row: Selectable<DeploysTable>, events: DeployEvent[]): DeployRecord {
  const record: DeployRecord = {
    id: row.id,
    status: row.status as DeployRecord["status"],
    request: JSON.parse(row.request) as DeployRecord["request"],
    created_at: row.created_at,
    results: JSON.parse(row.results) as DeployRecord["results"],
    events,
  };
  if (row.finished_at !== null) record.finished_at = row.finished_at;
  if (row.app_uuid !== null) record.app_uuid = row.app_uuid;
  if (row.image_ref !== null) record.image_ref = row.image_ref;
  if (row.digest !== null) record.digest = row.digest;
  if (row.error !== null) record.error = JSON.parse(row.error) as DeployRecord["error"];
  return record;
}

function patchColumns(patch: DeployRecordPatch): Partial<DeploysTable> {
  const set: Partial<DeploysTable> = {};
  if (patch.status !== undefined) set.status = patch.status;
  if (patch.finished_at !== undefined) set.finished_at = patch.finished_at;
  if (patch.app_uuid !== undefined) set.app_uuid = patch.app_uuid;
  if (patch.image_ref !== undefined) set.image_ref = patch.image_ref;
  if (patch.digest !== undefined) set.digest = patch.digest;
  if (patch.results !== undefined) set.results = json(patch.results);
  if (patch.error !== undefined) set.error = json(patch.error);
  return set;
}

export class SqlDeployStore implements DeployStore {
  readonly #store: Store;
  readonly #owner: string;
  readonly #fanout = new DeployEventFanout();

  private constructor(store: Store, owner: string) {
    this.#store = store;
    this.#owner = owner;
  }

  /**
   * A deploy this node was running when it died can never finish (its executor is gone): it is
   * closed as failed with NODE_RESTARTED, record and closing event in one transaction, so nobody
   * polls it forever. Then finished deploys beyond `capacity` are deleted, oldest first.
   */
  static async open(store: Store, opts: SqlDeployStoreOptions): Promise<SqlDeployStore> {
    const deploys = new SqlDeployStore(store, opts.owner);
    const now = opts.now ?? (() => new Date());
    const interrupted = await store.db
      .selectFrom("deploys")
      .select("id")
      .where("status", "in", ["running", "queued"])
      .where("owner", "=", opts.owner)
      .execute();
    for (const { id } of interrupted) {
      await store.transaction(async (trx) => {
        const at = now().toISOString();
        await trx
          .updateTable("deploys")
          .set({ status: "failed", finished_at: at, error: json(RESTARTED) })
          .where("id", "=", id)
          .execute();
        await trx
          .insertInto("deploy_events")
          .values(
            eventRow({
              seq: (await lastSeq(trx, id)) + 1,
              ts: at,
              deploy_id: id,
              step: "deploy",
              type: "deploy_failed",
              message: RESTARTED.message,
              data: { code: RESTARTED.code },
            }),
          )
          .execute();
      });
    }
    await deploys.#prune(opts.capacity ?? 1000);
    return deploys;
  }

  async #prune(capacity: number): Promise<void> {
    const keep = this.#store.db
      .selectFrom("deploys")
      .select("id")
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .limit(capacity);
    await this.#store.db
      .deleteFrom("deploys")
      .where("status", "not in", ["running", "queued"])
      // Postgres and SQLite both take a LIMIT inside IN when it is wrapped in a derived table.
      .where("id", "not in", (eb) => eb.selectFrom(keep.as("kept")).select("kept.id"))
      .execute();
  }

  async create(record: DeployRecord): Promise<void> {
    const { events, ...head } = record;
    await this.#store.transaction(async (trx) => {
      await trx.insertInto("deploys").values(deployRow(head, this.#owner)).execute();
      if (events.length > 0) await trx.insertInto("deploy_events").values(events.map(eventRow)).execute();
    });
  }

  /** One event, and with `patch` the record's change, in one transaction. */
  async append(event: DeployEvent, patch?: DeployRecordPatch): Promise<void> {
    const set = patch ? patchColumns(patch) : {};
    try {
      if (Object.keys(set).length === 0) {
        await this.#store.db.insertInto("deploy_events").values(eventRow(event)).execute();
      } else {
        await this.#store.transaction(async (trx) => {
          const updated = await trx
            .updateTable("deploys")
            .set(set)
            .where("id", "=", event.deploy_id)
            .executeTakeFirst();
          if (Number(updated.numUpdatedRows) === 0) throw notFound(event.deploy_id);
          await trx.insertInto("deploy_events").values(eventRow(event)).execute();
        });
      }
    } catch (err) {
      if (!(await this.#exists(event.deploy_id))) throw notFound(event.deploy_id);
      throw err;
    }
    this.#fanout.publish(event);
  }

  async update(id: string, patch: DeployRecordPatch): Promise<void> {
    const set = patchColumns(patch);
    if (Object.keys(set).length === 0) {
      if (!(await this.#exists(id))) throw notFound(id);
      return;
    }
    const result = await this.#store.db
      .updateTable("deploys")
      .set(set)
      .where("id", "=", id)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw notFound(id);
  }

  async get(id: string): Promise<DeployRecord | undefined> {
    const row = await this.#store.db
      .selectFrom("deploys")
      .selectAll()
      .where("id", "=", id)
      .executeTakeFirst();
    if (!row) return undefined;
    return recordOf(row, await this.#events(id, 0));
  }

  /** Newest first. */
  async list(limit = 50): Promise<DeployRecord[]> {
    const rows = await this.#store.db
      .selectFrom("deploys")
      .selectAll()
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .limit(limit)
      .execute();
    const out: DeployRecord[] = [];
    for (const row of rows) out.push(recordOf(row, await this.#events(row.id, 0)));
    return out;
  }

  /**
   * Every event after `afterSeq` from the store, then live ones. The listener is registered
   * before the store is read and buffers until the replay is done; seq numbers drop what both
   * delivered, so there is neither a gap nor a repeat.
   */
  async subscribe(id: string, afterSeq: number, listener: EventListener): Promise<() => void> {
    if (!(await this.#exists(id))) throw notFound(id);
    let last = afterSeq;
    let replayed = false;
    const pending: DeployEvent[] = [];
    const deliver = (event: DeployEvent) => {
      if (event.seq <= last) return;
      last = event.seq;
      listener(event);
    };
    const stop = this.#fanout.replayThenListen(
      { id, events: [] } as unknown as DeployRecord,
      afterSeq,
      (e) => {
        if (replayed) deliver(e);
        else pending.push(e);
      },
    );
    try {
      for (const event of await this.#events(id, afterSeq)) deliver(event);
    } catch (err) {
      stop();
      throw err;
    }
    replayed = true;
    for (const event of pending.sort((a, b) => a.seq - b.seq)) deliver(event);
    return stop;
  }

  async #events(id: string, afterSeq: number): Promise<DeployEvent[]> {
    const rows = await this.#store.db
      .selectFrom("deploy_events")
      .selectAll()
      .where("deploy_id", "=", id)
      .where("seq", ">", afterSeq)
      .orderBy("seq")
      .execute();
    return rows.map(eventOf);
  }

  async #exists(id: string): Promise<boolean> {
    const row = await this.#store.db
      .selectFrom("deploys")
      .select("id")
      .where("id", "=", id)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** The store is the caller's to close. */
  async close(): Promise<void> {}
}

async function lastSeq(trx: StoreTransaction, id: string): Promise<number> {
  const row = await trx
    .selectFrom("deploy_events")
    .select((eb) => eb.fn.max("seq").as("max"))
    .where("deploy_id", "=", id)
    .executeTakeFirst();
  return Number(row?.max ?? 0);
}

/** What became of one webhook delivery, as `GET /v1/webhooks/deliveries` shows it. */
export interface DeliveryNote {
  delivery_id: string;
  source: string;
  received_at: string;
  event?: string;
  outcome: "deployed" | "ignored" | "ping" | "rejected";
  reason?: string;
  deploy_id?: string;
  repository?: string;
  ref?: string;
}

/**
 * Webhook deliveries in the store: the ids the DeliveryLedger claims (so a restarted node still
 * recognises redeliveries) and what became of each. Trimmed to the newest `capacity` at open.
 */
export class SqlDeliveryLog implements DeliveryStore {
  readonly #store: Store;
  readonly #capacity: number;
  readonly #now: () => Date;

  private constructor(store: Store, capacity: number, now: () => Date) {
    this.#store = store;
    this.#capacity = capacity;
    this.#now = now;
  }

  static async open(
    store: Store,
    opts: { capacity?: number; now?: () => Date } = {},
  ): Promise<SqlDeliveryLog> {
    const log = new SqlDeliveryLog(store, opts.capacity ?? 10_000, opts.now ?? (() => new Date()));
    const keep = store.db
      .selectFrom("webhook_deliveries")
      .select("delivery_id")
      .orderBy((eb) => eb.fn.coalesce("claimed_at", "noted_at"), "desc")
      .orderBy("delivery_id", "desc")
      .limit(log.#capacity);
    await store.db
      .deleteFrom("webhook_deliveries")
      .where("delivery_id", "not in", (eb) => eb.selectFrom(keep.as("kept")).select("kept.delivery_id"))
      .execute();
    return log;
  }

  /** Claimed ids, oldest first. */
  async load(): Promise<string[]> {
    const rows = await this.#store.db
      .selectFrom("webhook_deliveries")
      .select("delivery_id")
      .where("claimed_at", "is not", null)
      .orderBy("claimed_at", "desc")
      .orderBy("delivery_id", "desc")
      .limit(this.#capacity)
      .execute();
    return rows.map((r) => r.delivery_id).reverse();
  }

  async record(id: string, _evicted: readonly string[]): Promise<void> {
    const at = this.#now().toISOString();
    await this.#store.db
      .insertInto("webhook_deliveries")
      .values({ delivery_id: id, claimed_at: at, note: null, noted_at: null })
      .onConflict((oc) => oc.column("delivery_id").doUpdateSet({ claimed_at: at }))
      .execute();
  }

  async note(note: DeliveryNote): Promise<void> {
    const at = this.#now().toISOString();
    await this.#store.db
      .insertInto("webhook_deliveries")
      .values({ delivery_id: note.delivery_id, claimed_at: null, note: json(note), noted_at: at })
      .onConflict((oc) => oc.column("delivery_id").doUpdateSet({ note: json(note), noted_at: at }))
      .execute();
  }

  async noteOf(deliveryId: string): Promise<DeliveryNote | undefined> {
    const row = await this.#store.db
      .selectFrom("webhook_deliveries")
      .select("note")
      .where("delivery_id", "=", deliveryId)
      .executeTakeFirst();
    return row?.note ? (JSON.parse(row.note) as DeliveryNote) : undefined;
  }

  /** Newest first. */
  async recent(limit = 100): Promise<DeliveryNote[]> {
    const rows = await this.#store.db
      .selectFrom("webhook_deliveries")
      .select("note")
      .where("note", "is not", null)
      .orderBy("noted_at", "desc")
      .orderBy("delivery_id", "desc")
      .limit(limit)
      .execute();
    return rows.map((r) => JSON.parse(r.note as string) as DeliveryNote);
  }
}
