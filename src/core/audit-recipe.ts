import canonicalize from "canonicalize";

/**
 * The audit chain's hash recipe, shared by the node (src/ledger/chain.ts hashes with node:crypto)
 * and the dashboard (which recomputes it in the browser with WebCrypto). Only the text that is
 * hashed and how rows are judged live here; each side brings its own SHA-256.
 *
 *   event_hash = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the event object
 *                without its `event_hash` field;
 *   prev_hash  = the previous event's event_hash, 64 zeros for seq 1;
 *   seq        = 1, 2, 3, … with no gaps.
 */

/** `prev_hash` of the first event. */
export const GENESIS_HASH = "0".repeat(64);

export interface AuditEventBody {
  seq: number;
  /** ISO 8601 UTC, millisecond precision. */
  at: string;
  /** Who: `node-key:<8 hex>`, `tenant:<t>/<sub>`, `github:<login>`, `forgejo:<login>`, `system`. */
  actor: string;
  /** What, dotted: `app.create`, `app.update`, `deploy.accepted`, `deploy.target`… */
  action: string;
  /** What it was done to, e.g. `app:<name>` or `deploy:<id>`. */
  subject: string;
  before?: unknown;
  after?: unknown;
  prev_hash: string;
}

export interface AuditEvent extends AuditEventBody {
  event_hash: string;
}

/** The exact bytes that are hashed: the JCS form of the event without `event_hash`. */
export function canonicalEventText(event: AuditEventBody | AuditEvent): string {
  const { event_hash: _ignored, ...body } = event as AuditEvent;
  // JCS has no `undefined`; an absent before/after must hash the same as one never set.
  if (body.before === undefined) delete body.before;
  if (body.after === undefined) delete body.after;
  const text = canonicalize(body);
  if (text === undefined) throw new Error("audit event is not JSON-serializable");
  return text;
}

/** One shown row's verdict: its own hash, and its link to the row before when that row is shown. */
export interface RowVerdict {
  seq: number;
  hashOk: boolean;
  /** undefined when the row before is not among those judged. */
  linkOk: boolean | undefined;
  reason?: string;
}

/**
 * Judges a page of rows (in any order, possibly with gaps): each row's hash recomputed with
 * `sha256Hex`, and its prev_hash against the row before it when that row is in the page.
 */
export async function judgeRows(
  rows: readonly AuditEvent[],
  sha256Hex: (text: string) => string | Promise<string>,
): Promise<Map<number, RowVerdict>> {
  const bySeq = new Map(rows.map((r) => [r.seq, r]));
  const verdicts = new Map<number, RowVerdict>();
  for (const row of rows) {
    let hashOk: boolean;
    try {
      hashOk = (await sha256Hex(canonicalEventText(row))) === row.event_hash;
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

/** The lowest seq whose hash or link fails, if any. */
export function firstBroken(verdicts: Map<number, RowVerdict>): RowVerdict | undefined {
  let first: RowVerdict | undefined;
  for (const v of verdicts.values()) {
    if ((!v.hashOk || v.linkOk === false) && (first === undefined || v.seq < first.seq)) first = v;
  }
  return first;
}
