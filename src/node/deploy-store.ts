import { type FileHandle, mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";
import type {
  DeployEvent,
  DeployRecord,
  DeployRecordPatch,
  DeployStore,
  EventListener,
} from "../pipeline/executor.js";
import { DeployEventFanout, isTerminalEvent } from "../pipeline/executor.js";
import type { DeliveryStore } from "../pipeline/webhooks.js";

/**
 * Deploy records and webhook deliveries in the node's data dir, as JSON lines with an fsync after
 * every append, so a killed node loses nothing it acknowledged and a restarted one keeps history.
 *
 * One file per deploy (`deploys/<id>.jsonl`): the record's first line, then one line per event or
 * patch, in the order they happened. Replaying the lines rebuilds the record. A line cut short by
 * a crash is the last one and is skipped. JSON lines instead of an embedded database because
 * every write here is an append to one deploy's own log: no cross-record transaction is needed,
 * and a native module (better-sqlite3 builds from source here, ~70 s) would be one more thing
 * every install must compile.
 */

type DeployLine =
  | { kind: "record"; record: Omit<DeployRecord, "events"> }
  | { kind: "event"; event: DeployEvent }
  | { kind: "update"; patch: DeployRecordPatch };

const DEPLOY_ID = /^[0-9a-zA-Z-]{1,64}$/;

/** Appends lines to one file, one after another, each made durable before the next starts. */
class AppendLog {
  #chain: Promise<void> = Promise.resolve();
  #handle: FileHandle | undefined;

  constructor(readonly path: string) {}

  append(line: string): Promise<void> {
    const next = this.#chain.then(async () => {
      this.#handle ??= await open(this.path, "a", 0o600);
      await this.#handle.appendFile(`${line}\n`);
      await this.#handle.datasync();
    });
    // A failed write must not wedge later ones; the caller sees this one's failure.
    this.#chain = next.catch(() => {});
    return next;
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#handle?.close();
    this.#handle = undefined;
  }
}

function parseLines(text: string): unknown[] {
  const out: unknown[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // Only the last line can be torn by a crash mid-write; nothing after it was acknowledged.
      break;
    }
  }
  return out;
}

export interface FileDeployStoreOptions {
  /** Deploys kept; the oldest finished ones beyond it are deleted at open. Default 1000. */
  capacity?: number;
  now?: () => Date;
}

export class FileDeployStore implements DeployStore {
  readonly #dir: string;
  readonly #records = new Map<string, DeployRecord>();
  readonly #logs = new Map<string, AppendLog>();
  readonly #fanout = new DeployEventFanout();

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Loads every deploy under `<dataDir>/deploys`. A deploy that was running when the node died
   * can never finish (its executor is gone): it is closed as failed with NODE_RESTARTED, so
   * nobody polls it forever.
   */
  static async open(dataDir: string, opts: FileDeployStoreOptions = {}): Promise<FileDeployStore> {
    const dir = join(dataDir, "deploys");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new FileDeployStore(dir);
    const now = opts.now ?? (() => new Date());
    const files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl"));
    for (const file of files) {
      const record = FileDeployStore.#replay(parseLines(await readFile(join(dir, file), "utf8")));
      if (record) store.#records.set(record.id, record);
    }
    const interrupted = [...store.#records.values()].filter((r) => r.status === "running");
    for (const record of interrupted) {
      const error = {
        code: "NODE_RESTARTED",
        message: "the node stopped while this deploy ran; start it again",
        step: "deploy" as const,
      };
      await store.update(record.id, { status: "failed", finished_at: now().toISOString(), error });
      const last = record.events.at(-1)?.seq ?? 0;
      await store.append({
        seq: last + 1,
        ts: now().toISOString(),
        deploy_id: record.id,
        step: "deploy",
        type: "deploy_failed",
        message: error.message,
        data: { code: error.code },
      });
    }
    const capacity = opts.capacity ?? 1000;
    const finished = [...store.#records.values()]
      .filter((r) => r.status !== "running")
      .sort((a, b) => a.created_at.localeCompare(b.created_at));
    for (const old of finished.slice(0, Math.max(0, store.#records.size - capacity))) {
      store.#records.delete(old.id);
      await rm(join(dir, `${old.id}.jsonl`), { force: true });
    }
    return store;
  }

  static #replay(lines: unknown[]): DeployRecord | undefined {
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

  #log(id: string): AppendLog {
    let log = this.#logs.get(id);
    if (!log) {
      log = new AppendLog(join(this.#dir, `${id}.jsonl`));
      this.#logs.set(id, log);
    }
    return log;
  }

  #known(id: string): DeployRecord {
    const record = this.#records.get(id);
    if (!record) throw new TabbifyError("DEPLOY_NOT_FOUND", `deploy ${id.slice(0, 64)} is unknown`);
    return record;
  }

  async create(record: DeployRecord): Promise<void> {
    if (!DEPLOY_ID.test(record.id)) throw new Error(`deploy id ${record.id.slice(0, 64)} is not a file name`);
    if (this.#records.has(record.id)) throw new Error(`deploy ${record.id} already exists`);
    const { events: _events, ...head } = structuredClone(record);
    this.#records.set(record.id, { ...head, events: [] });
    await this.#log(record.id).append(JSON.stringify({ kind: "record", record: head }));
  }

  async append(event: DeployEvent): Promise<void> {
    const record = this.#known(event.deploy_id);
    await this.#log(event.deploy_id).append(JSON.stringify({ kind: "event", event }));
    record.events.push(event);
    this.#fanout.publish(event);
    if (isTerminalEvent(event)) {
      // The deploy is over: nothing more is written to its file.
      await this.#logs.get(event.deploy_id)?.close();
      this.#logs.delete(event.deploy_id);
    }
  }

  async update(id: string, patch: DeployRecordPatch): Promise<void> {
    const record = this.#known(id);
    await this.#log(id).append(JSON.stringify({ kind: "update", patch }));
    Object.assign(record, structuredClone(patch));
  }

  async get(id: string): Promise<DeployRecord | undefined> {
    const record = this.#records.get(id);
    return record ? structuredClone(record) : undefined;
  }

  /** Newest first. */
  list(limit = 50): DeployRecord[] {
    return [...this.#records.values()]
      .sort((a, b) => b.created_at.localeCompare(a.created_at))
      .slice(0, limit)
      .map((r) => structuredClone(r));
  }

  async subscribe(id: string, afterSeq: number, listener: EventListener): Promise<() => void> {
    const record = this.#known(id);
    return this.#fanout.replayThenListen(record, afterSeq, listener);
  }

  async close(): Promise<void> {
    for (const log of this.#logs.values()) await log.close();
    this.#logs.clear();
  }
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
 * The webhook delivery log (`deliveries.jsonl`): the ids the DeliveryLedger claims (so a restarted
 * node still recognises redeliveries) and what became of each delivery. Rewritten to the newest
 * `capacity` entries at open, so it does not grow without bound.
 */
export class DeliveryLog implements DeliveryStore {
  readonly #path: string;
  readonly #log: AppendLog;
  readonly #ids: string[] = [];
  readonly #notes = new Map<string, DeliveryNote>();

  private constructor(path: string) {
    this.#path = path;
    this.#log = new AppendLog(path);
  }

  static async open(dataDir: string, capacity = 10_000): Promise<DeliveryLog> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, "deliveries.jsonl");
    let text = "";
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
    const ids: string[] = [];
    const notes = new Map<string, DeliveryNote>();
    for (const raw of parseLines(text)) {
      const line = raw as { claimed?: string; note?: DeliveryNote };
      if (typeof line.claimed === "string") ids.push(line.claimed);
      if (line.note) notes.set(line.note.delivery_id, line.note);
    }
    const keep = [...new Set(ids)].slice(-capacity);
    const keepSet = new Set(keep);
    const log = new DeliveryLog(path);
    log.#ids.push(...keep);
    for (const [id, note] of notes)
      if (keepSet.has(id) || note.outcome === "rejected") log.#notes.set(id, note);
    const compacted = [
      ...keep.map((id) => JSON.stringify({ claimed: id })),
      ...[...log.#notes.values()].slice(-capacity).map((note) => JSON.stringify({ note })),
    ];
    const temp = `${path}.tmp`;
    const handle = await open(temp, "w", 0o600);
    try {
      await handle.writeFile(compacted.length > 0 ? `${compacted.join("\n")}\n` : "");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    return log;
  }

  async load(): Promise<string[]> {
    return [...this.#ids];
  }

  async record(id: string, _evicted: readonly string[]): Promise<void> {
    await this.#log.append(JSON.stringify({ claimed: id }));
    this.#ids.push(id);
  }

  async note(note: DeliveryNote): Promise<void> {
    await this.#log.append(JSON.stringify({ note }));
    this.#notes.set(note.delivery_id, note);
  }

  noteOf(deliveryId: string): DeliveryNote | undefined {
    return this.#notes.get(deliveryId);
  }

  /** Newest first. */
  recent(limit = 100): DeliveryNote[] {
    return [...this.#notes.values()].reverse().slice(0, limit);
  }

  get path(): string {
    return this.#path;
  }

  close(): Promise<void> {
    return this.#log.close();
  }
}
