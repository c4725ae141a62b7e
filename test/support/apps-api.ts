import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";

/** HTTP helpers for the registry API tests, and a chain check written from the README's recipe alone. */

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

export async function call(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; contentType?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>), text };
}

export interface WireEvent {
  seq: number;
  prev_hash: string;
  event_hash: string;
  [key: string]: unknown;
}

/** Every event, paging with `after` and `limit` like any client would. */
export async function fetchAudit(base: string, token: string, limit = 7): Promise<WireEvent[]> {
  const events: WireEvent[] = [];
  let after = 0;
  for (;;) {
    const res = await call(base, "GET", `/api/v1/audit?after=${after}&limit=${limit}`, { token });
    assert.equal(res.status, 200, res.text);
    const page = res.body.events as WireEvent[];
    events.push(...page);
    if (res.body.next_after === undefined) return events;
    after = res.body.next_after as number;
  }
}

/**
 * The README's recipe, independent of src/ledger: SHA-256 over the JCS text of the event without
 * event_hash; prev_hash chains from 64 zeros; seq counts from 1. Returns the first broken seq.
 */
export function firstBrokenSeq(events: WireEvent[]): number | undefined {
  let prev = "0".repeat(64);
  for (const [i, event] of events.entries()) {
    const { event_hash, ...rest } = event;
    const hash = createHash("sha256")
      .update(canonicalize(rest) as string)
      .digest("hex");
    if (event.seq !== i + 1 || event.prev_hash !== prev || hash !== event_hash) return i + 1;
    prev = event_hash;
  }
  return undefined;
}
