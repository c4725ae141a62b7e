import { readdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { isErrno } from "../core/errors.js";
import type { DeployEvent, DeployRecord, DeployRecordPatch } from "../pipeline/executor.js";
import type { Store } from "../store/index.js";
import type { DeliveryNote } from "./deploy-store.js";
import { deployRow } from "./deploy-store.js";

/**
 * The node's earlier state format, JSON lines under its data dir, imported into the store once:
 *
 *   deploys/<id>.jsonl   {"kind":"record",record} then {"kind":"event",event} / {"kind":"update",patch}
 *   deliveries.jsonl     {"claimed":id} / {"note":DeliveryNote}
 *
 * Everything goes in one transaction together with a `store_meta` row that marks the data dir as
 * imported, so a crash mid-import leaves nothing and the next start imports again; after that the
 * files are left as they are (never deleted) and never read again.
 */

export interface ImportSummary {
  deploys: number;
  events: number;
  deliveries: number;
}

/** The marker's key: the data dir as this host sees it (several nodes may share a Postgres). */
export function importKey(dataDir: string): string {
  return `jsonl-import:${hostname()}:${resolve(dataDir)}`;
}

/** A line cut short by a crash is the last one: it and anything after it are skipped. */
function parseLines(text: string): unknown[] {
  const out: unknown[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      break;
    }
  }
  return out;
}

type DeployLine =
  | { kind: "record"; record: Omit<DeployRecord, "events"> }
  | { kind: "event"; event: DeployEvent }
  | { kind: "update"; patch: DeployRecordPatch };

function replayDeploy(lines: unknown[]): DeployRecord | undefined {
  let record: DeployRecord | undefined;
  for (const raw of lines) {
    const line = raw as DeployLine;
    if (line.kind === "record") record = { ...line.record, events: [] };
    else if (!record) return undefined;
    else if (line.kind === "event") record.events.push(line.event);
    else if (line.kind === "update") Object.assign(record, line.patch);
  }
  return record;
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

async function readDeploys(dataDir: string): Promise<DeployRecord[]> {
  const dir = join(dataDir, "deploys");
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")).sort();
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  const records: DeployRecord[] = [];
  for (const file of files) {
    const text = await readIfThere(join(dir, file));
    const record = text === undefined ? undefined : replayDeploy(parseLines(text));
    if (record) records.push(record);
  }
  return records;
}

interface OldDelivery {
  id: string;
  claimed: boolean;
  note?: DeliveryNote;
}

async function readDeliveries(dataDir: string): Promise<OldDelivery[]> {
  const text = await readIfThere(join(dataDir, "deliveries.jsonl"));
  if (text === undefined) return [];
  const byId = new Map<string, OldDelivery>();
  for (const raw of parseLines(text)) {
    const line = raw as { claimed?: unknown; note?: DeliveryNote };
    if (typeof line.claimed === "string") {
      const entry = byId.get(line.claimed) ?? { id: line.claimed, claimed: false };
      entry.claimed = true;
      byId.set(line.claimed, entry);
    }
    if (line.note && typeof line.note.delivery_id === "string") {
      const entry = byId.get(line.note.delivery_id) ?? { id: line.note.delivery_id, claimed: false };
      entry.note = line.note;
      byId.set(line.note.delivery_id, entry);
    }
  }
  return [...byId.values()];
}

/**
 * Imports `dataDir`'s JSON lines unless this data dir was imported before. Returns what was
 * imported, or undefined when there was nothing to do. Rows already in the store are kept.
 */
export async function importJsonLines(
  store: Store,
  dataDir: string,
  owner: string,
  now: () => Date = () => new Date(),
): Promise<ImportSummary | undefined> {
  const key = importKey(dataDir);
  const done = await store.db
    .selectFrom("store_meta")
    .select("key")
    .where("key", "=", key)
    .executeTakeFirst();
  if (done) return undefined;
  const records = await readDeploys(dataDir);
  const deliveries = await readDeliveries(dataDir);
  if (records.length === 0 && deliveries.length === 0) return undefined;
  const summary: ImportSummary = { deploys: 0, events: 0, deliveries: 0 };
  const at = now().toISOString();
  await store.transaction(async (trx) => {
    await store.serialize(trx, key);
    for (const { events, ...head } of records) {
      const inserted = await trx
        .insertInto("deploys")
        .values(deployRow(head, owner))
        .onConflict((oc) => oc.column("id").doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) continue;
      summary.deploys++;
      // Insert in slices: both engines cap the parameters of one statement.
      for (let i = 0; i < events.length; i += 500) {
        const slice = events.slice(i, i + 500).map((e) => ({
          deploy_id: head.id,
          seq: e.seq,
          ts: e.ts,
          step: e.step,
          type: e.type,
          message: e.message ?? null,
          data: e.data === undefined ? null : JSON.stringify(e.data),
        }));
        await trx
          .insertInto("deploy_events")
          .values(slice)
          .onConflict((oc) => oc.columns(["deploy_id", "seq"]).doNothing())
          .execute();
      }
      summary.events += events.length;
    }
    // The old log kept claims in arrival order; spacing them 1 ms apart keeps that order.
    const base = now().getTime() - deliveries.length;
    for (const [i, d] of deliveries.entries()) {
      const stamp = new Date(base + i).toISOString();
      const inserted = await trx
        .insertInto("webhook_deliveries")
        .values({
          delivery_id: d.id,
          claimed_at: d.claimed ? stamp : null,
          note: d.note ? JSON.stringify(d.note) : null,
          noted_at: d.note ? stamp : null,
        })
        .onConflict((oc) => oc.column("delivery_id").doNothing())
        .executeTakeFirst();
      summary.deliveries += Number(inserted.numInsertedOrUpdatedRows ?? 0);
    }
    await trx
      .insertInto("store_meta")
      .values({ key, value: JSON.stringify({ imported_at: at, ...summary }), updated_at: at })
      .execute();
  });
  return summary;
}
