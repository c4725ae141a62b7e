import canonicalize from "canonicalize";

/**
 * The audit chain's recipe, recomputed in the browser with WebCrypto (the node's is
 * src/ledger/chain.ts, with the same `canonicalize` library):
 *   event_hash = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the event object
 *                without `event_hash`; prev_hash = the previous event's event_hash (64 zeros for
 *                seq 1).
 */

export const GENESIS_HASH = "0".repeat(64);

export interface AuditRow {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  before?: unknown;
  after?: unknown;
  prev_hash: string;
  event_hash: string;
}

export interface RowVerdict {
  seq: number;
  /** The row's own hash recomputes to its event_hash. */
  hashOk: boolean;
  /** Its prev_hash matches the event_hash of seq - 1, when that row is among those shown. */
  linkOk: boolean | undefined;
  reason?: string;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function eventHash(row: AuditRow): Promise<string> {
  const { event_hash: _ignored, ...body } = row;
  if (body.before === undefined) delete body.before;
  if (body.after === undefined) delete body.after;
  const text = canonicalize(body);
  if (text === undefined) throw new Error("not JSON-serializable");
  return sha256Hex(text);
}

/** Judges each row shown: its own hash, and its link to the row before when that row is shown. */
export async function verifyRows(rows: readonly AuditRow[]): Promise<Map<number, RowVerdict>> {
  const bySeq = new Map(rows.map((r) => [r.seq, r]));
  const verdicts = new Map<number, RowVerdict>();
  for (const row of rows) {
    let hashOk: boolean;
    try {
      hashOk = (await eventHash(row)) === row.event_hash;
    } catch {
      hashOk = false;
    }
    const previous = row.seq === 1 ? { event_hash: GENESIS_HASH } : bySeq.get(row.seq - 1);
    const linkOk = previous === undefined ? undefined : previous.event_hash === row.prev_hash;
    const verdict: RowVerdict = { seq: row.seq, hashOk, linkOk };
    if (!hashOk) verdict.reason = "event_hash does not match the event's contents";
    else if (linkOk === false)
      verdict.reason = `prev_hash does not match the event_hash of seq ${row.seq - 1}`;
    verdicts.set(row.seq, verdict);
  }
  return verdicts;
}

/** The lowest seq among the rows shown whose hash or link fails, if any. */
export function firstBroken(verdicts: Map<number, RowVerdict>): RowVerdict | undefined {
  let first: RowVerdict | undefined;
  for (const v of verdicts.values()) {
    if ((!v.hashOk || v.linkOk === false) && (first === undefined || v.seq < first.seq)) first = v;
  }
  return first;
}
