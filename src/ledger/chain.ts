import { createHash } from "node:crypto";
import {
  type AuditEvent,
  type AuditEventBody,
  canonicalEventText,
  GENESIS_HASH,
} from "../core/audit-recipe.js";

export {
  type AuditEvent,
  type AuditEventBody,
  canonicalEventText,
  GENESIS_HASH,
} from "../core/audit-recipe.js";

/**
 * The audit chain: an append-only list of events, each bound to the one before it by hash, so
 * anyone holding the events (from the API, a database dump or a snapshot) can recompute every
 * link and find the first one that was altered, removed or inserted.
 *
 * The recipe (documented in the README, so others can verify without this code) is in
 * src/core/audit-recipe.ts, which the dashboard's browser bundle shares.
 */

/** What a caller appends: the chain supplies seq, prev_hash and the hash. */
export interface AuditEntry {
  actor: string;
  action: string;
  subject: string;
  before?: unknown;
  after?: unknown;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function eventHash(event: AuditEventBody | AuditEvent): string {
  return createHash("sha256").update(canonicalEventText(event), "utf8").digest("hex");
}

/** The next event after `head` (undefined for an empty chain), hashed. */
export function sealEvent(
  head: { seq: number; event_hash: string } | undefined,
  entry: AuditEntry,
  at: Date,
): AuditEvent {
  const body: AuditEventBody = {
    seq: (head?.seq ?? 0) + 1,
    at: at.toISOString(),
    actor: entry.actor,
    action: entry.action,
    subject: entry.subject,
    prev_hash: head?.event_hash ?? GENESIS_HASH,
  };
  if (entry.before !== undefined) body.before = entry.before;
  if (entry.after !== undefined) body.after = entry.after;
  return { ...body, event_hash: eventHash(body) };
}

export type ChainBreak = { seq: number; reason: string };

export type ChainResult =
  | { ok: true; count: number; head: { seq: number; event_hash: string } | undefined }
  | { ok: false; count: number; broken: ChainBreak };

/**
 * Checks events one at a time, in order, so a chain of any length can be verified page by page
 * without holding it whole. After the first break it stops judging (every later link would
 * only repeat it).
 */
export class ChainVerifier {
  #expectedSeq = 1;
  #prevHash = GENESIS_HASH;
  #count = 0;
  #broken: ChainBreak | undefined;

  /** Judges the next event; returns the break if this is the first one. */
  push(event: AuditEvent): ChainBreak | undefined {
    if (this.#broken) return undefined;
    this.#count += 1;
    const problem = this.#problem(event);
    if (problem !== undefined) {
      // The first seq whose link fails: the altered event itself, or the one that is missing.
      this.#broken = { seq: this.#expectedSeq, reason: problem };
      return this.#broken;
    }
    this.#expectedSeq += 1;
    this.#prevHash = event.event_hash;
    return undefined;
  }

  #problem(event: AuditEvent): string | undefined {
    if (typeof event !== "object" || event === null) return "not an event object";
    if (event.seq !== this.#expectedSeq) {
      return event.seq > this.#expectedSeq
        ? `seq ${this.#expectedSeq} is missing (next event is seq ${event.seq})`
        : `seq ${event.seq} appears where seq ${this.#expectedSeq} was expected`;
    }
    if (typeof event.event_hash !== "string" || !HEX64.test(event.event_hash)) {
      return "event_hash is not 64 lowercase hex digits";
    }
    if (event.prev_hash !== this.#prevHash) {
      return `prev_hash does not match the event_hash of seq ${this.#expectedSeq - 1 || "0 (genesis)"}`;
    }
    let recomputed: string;
    try {
      recomputed = eventHash(event);
    } catch {
      return "the event is not JSON-serializable";
    }
    if (recomputed !== event.event_hash) return "event_hash does not match the event's contents";
    return undefined;
  }

  result(): ChainResult {
    if (this.#broken) return { ok: false, count: this.#count, broken: this.#broken };
    const head = this.#count === 0 ? undefined : { seq: this.#expectedSeq - 1, event_hash: this.#prevHash };
    return { ok: true, count: this.#count, head };
  }
}

export function verifyChain(events: Iterable<AuditEvent>): ChainResult {
  const verifier = new ChainVerifier();
  for (const event of events) if (verifier.push(event)) break;
  return verifier.result();
}

export async function verifyChainAsync(events: AsyncIterable<AuditEvent>): Promise<ChainResult> {
  const verifier = new ChainVerifier();
  for await (const event of events) if (verifier.push(event)) break;
  return verifier.result();
}
