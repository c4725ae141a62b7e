import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AuditEvent,
  ChainVerifier,
  canonicalEventText,
  GENESIS_HASH,
  sealEvent,
  verifyChain,
} from "./chain.js";

// Hashes computed by hand with Python's hashlib over the canonical text written out below
// (keys sorted, no whitespace, 1.5e-7 spelled the ECMAScript way), not with this code.
const FIRST_HASH = "6fc89861ae02f70052ecb173da5c60d5cdfcc6a288a37b3f2730e3767ddbe59e";
const SECOND_HASH = "5a132a2ca395bcb882629abf18dec75174e897351c6f0fba0fd549826d4d6891";

function vectorChain(): AuditEvent[] {
  const first = sealEvent(
    undefined,
    { actor: "system", action: "app.create", subject: "app:web", after: { n: 0.00000015, name: "web" } },
    new Date("2026-01-02T03:04:05.678Z"),
  );
  const second = sealEvent(
    first,
    { actor: "node-key:1a2b3c4d", action: "app.delete", subject: "app:web", before: { name: "web" } },
    new Date("2026-01-02T03:04:06Z"),
  );
  return [first, second];
}

describe("audit chain", () => {
  it("hashes the JCS text of the event without event_hash (hand-checked vector)", () => {
    const [first, second] = vectorChain() as [AuditEvent, AuditEvent];
    assert.equal(
      canonicalEventText(first),
      `{"action":"app.create","actor":"system","after":{"n":1.5e-7,"name":"web"},"at":"2026-01-02T03:04:05.678Z","prev_hash":"${GENESIS_HASH}","seq":1,"subject":"app:web"}`,
    );
    assert.equal(first.seq, 1);
    assert.equal(first.prev_hash, "0".repeat(64));
    assert.equal(first.event_hash, FIRST_HASH);
    assert.equal(second.seq, 2);
    assert.equal(second.prev_hash, FIRST_HASH);
    assert.equal(second.event_hash, SECOND_HASH);
    assert.equal("after" in second, false, "an absent after is left out, not null");
  });

  it("verifies an intact chain and reports its head", () => {
    const result = verifyChain(vectorChain());
    assert.deepEqual(result, { ok: true, count: 2, head: { seq: 2, event_hash: SECOND_HASH } });
    assert.deepEqual(verifyChain([]), { ok: true, count: 0, head: undefined });
  });

  it("round-trips through JSON text (what the API and the database hold)", () => {
    const parsed = JSON.parse(JSON.stringify(vectorChain())) as AuditEvent[];
    assert.equal(verifyChain(parsed).ok, true);
  });

  const tampers: Array<[string, (events: AuditEvent[]) => AuditEvent[], number]> = [
    ["an edited field", (e) => [{ ...e[0]!, actor: "mallory" }, e[1]!], 1],
    ["an edited later field", (e) => [e[0]!, { ...e[1]!, before: { name: "api" } }], 2],
    ["a removed first event", (e) => [e[1]!], 1],
    ["a removed last link re-sealed elsewhere", (e) => [e[0]!, { ...e[1]!, seq: 3 }], 2],
    ["a duplicated event", (e) => [e[0]!, e[0]!], 2],
    [
      "a rehashed event whose successor still points at the old hash",
      (e) => {
        const forged = sealEvent(
          undefined,
          { actor: "mallory", action: "app.create", subject: "app:web" },
          new Date(),
        );
        return [forged, e[1]!];
      },
      2,
    ],
    ["a wrong genesis", (e) => [{ ...e[0]!, prev_hash: "f".repeat(64) }], 1],
    ["an uppercase hash", (e) => [{ ...e[0]!, event_hash: FIRST_HASH.toUpperCase() }], 1],
  ];
  for (const [name, tamper, seq] of tampers) {
    it(`names the first broken seq for ${name}`, () => {
      const result = verifyChain(tamper(vectorChain()));
      assert.equal(result.ok, false);
      assert.equal(result.ok === false && result.broken.seq, seq);
    });
  }

  it("stops judging after the first break", () => {
    const verifier = new ChainVerifier();
    const [first, second] = vectorChain() as [AuditEvent, AuditEvent];
    assert.ok(verifier.push({ ...first, subject: "x" }));
    assert.equal(verifier.push(second), undefined);
    const result = verifier.result();
    assert.equal(result.ok === false && result.broken.seq, 1);
  });
});
