import { type AuditEntry, type AuditEvent, sealEvent } from "../ledger/chain.js";
import { redactForAudit } from "../ledger/redact.js";
import type { Store, StoreTransaction } from "../store/index.js";
import type { AuditEventsTable } from "../store/tables/apps.js";

/**
 * The audit chain in the node's store. Every append happens inside the transaction of the
 * mutation it records, so an event exists exactly when its mutation committed. Appends take the
 * store's `audit-chain` lock first (a Postgres advisory lock; SQLite has one writer anyway), so
 * seq and prev_hash never fork; the primary key on seq backs that up.
 */

const CHAIN_LOCK = "audit-chain";

export interface AuditLogOptions {
  /** Values that must never appear in an event (node key, webhook secrets): replaced if seen. */
  secretValues?: readonly string[];
  now?: () => Date;
}

export class AuditLog {
  readonly #store: Store;
  readonly #secretValues: readonly string[];
  readonly #now: () => Date;

  constructor(store: Store, opts: AuditLogOptions = {}) {
    this.#store = store;
    this.#secretValues = opts.secretValues ?? [];
    this.#now = opts.now ?? (() => new Date());
  }

  /** Appends within `trx` (the mutation's own transaction). Before/after are redacted first. */
  async append(trx: StoreTransaction, entry: AuditEntry): Promise<AuditEvent> {
    await this.#store.serialize(trx, CHAIN_LOCK);
    const head = await trx
      .selectFrom("audit_events")
      .select(["seq", "event_hash"])
      .orderBy("seq", "desc")
      .limit(1)
      .executeTakeFirst();
    const redacted: AuditEntry = { actor: entry.actor, action: entry.action, subject: entry.subject };
    const opts = { secretValues: this.#secretValues };
    if (entry.before !== undefined) redacted.before = redactForAudit(entry.before, opts);
    if (entry.after !== undefined) redacted.after = redactForAudit(entry.after, opts);
    const event = sealEvent(
      head ? { seq: Number(head.seq), event_hash: head.event_hash } : undefined,
      redacted,
      this.#now(),
    );
    await trx.insertInto("audit_events").values(toRow(event)).execute();
    return event;
  }

  /** Appends in a transaction of its own, for work that has nothing else to commit. */
  record(entry: AuditEntry): Promise<AuditEvent> {
    return this.#store.transaction((trx) => this.append(trx, entry));
  }

  /** Events with seq > `after`, oldest first, at most `limit`. */
  async page(after: number, limit: number): Promise<AuditEvent[]> {
    return readAuditPage(this.#store, after, limit);
  }
}

export async function readAuditPage(
  store: Pick<Store, "db">,
  after: number,
  limit: number,
): Promise<AuditEvent[]> {
  const rows = await store.db
    .selectFrom("audit_events")
    .selectAll()
    .where("seq", ">", after)
    .orderBy("seq", "asc")
    .limit(limit)
    .execute();
  return rows.map(auditEventFromRow);
}

/** Every event, oldest first, a page at a time (never the whole chain in memory). */
export async function* readAuditChain(store: Pick<Store, "db">, pageSize = 1000): AsyncGenerator<AuditEvent> {
  let after = 0;
  for (;;) {
    const page = await readAuditPage(store, after, pageSize);
    yield* page;
    if (page.length < pageSize) return;
    after = page.at(-1)!.seq;
  }
}

function toRow(event: AuditEvent): AuditEventsTable {
  return {
    seq: event.seq,
    at: event.at,
    actor: event.actor,
    action: event.action,
    subject: event.subject,
    before: event.before === undefined ? null : JSON.stringify(event.before),
    after: event.after === undefined ? null : JSON.stringify(event.after),
    prev_hash: event.prev_hash,
    event_hash: event.event_hash,
  };
}

/** A stored row as the event the chain sealed (before/after parsed back from their JSON text). */
export function auditEventFromRow(row: AuditEventsTable): AuditEvent {
  const event: AuditEvent = {
    seq: Number(row.seq),
    at: row.at,
    actor: row.actor,
    action: row.action,
    subject: row.subject,
    prev_hash: row.prev_hash,
    event_hash: row.event_hash,
  };
  if (row.before !== null) event.before = parseStored(row.before);
  if (row.after !== null) event.after = parseStored(row.after);
  // Key order as the API documents it; the hash does not depend on it.
  const { event_hash, ...rest } = event;
  return { ...rest, event_hash };
}

/**
 * A stored member that is no longer JSON (a row edited by hand) must not stop a reader: it comes
 * back as its raw text, which can never hash to the sealed value, so verification names its seq.
 */
function parseStored(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { unparseable_json: text };
  }
}
