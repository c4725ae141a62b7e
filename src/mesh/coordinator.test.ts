import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deriveAppUla } from "../core/address.js";
import { isTabbifyError } from "../core/errors.js";
import { parsePeerRecord, RosterCoordinator } from "./coordinator.js";
import type { PeerRecord } from "./roster.js";

const appA = "0191e7c2-1111-7222-8333-444455556666";
const appB = "0191e7c2-2222-7222-8333-444455556666";

function supervisor(name: string): PeerRecord {
  return {
    kind: "supervisor",
    name,
    address: `http://${name}:8730`,
    ula: `fd5a:1f00:0:1::1`,
    version: "1",
    tags: ["supervisor", "process"],
  };
}

function runner(uuid: string, parent?: string): PeerRecord {
  return {
    kind: "runner",
    name: uuid,
    app_uuid: uuid,
    address: "127.1.2.3:8730",
    ula: "127.1.2.3",
    version: "1",
    tags: ["runner"],
    ...(parent ? { parent } : {}),
  };
}

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("RosterCoordinator", () => {
  it("keeps a peer's id stable per (kind, name) across re-registration and expiry", () => {
    const c = clock();
    const roster = new RosterCoordinator({ heartbeatTimeoutMs: 2000, now: c.now });
    const first = roster.register(supervisor("thinkpad"));
    assert.match(first.peer_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    assert.equal(roster.register(supervisor("thinkpad")).peer_id, first.peer_id);
    c.advance(5000);
    assert.equal(roster.peers().length, 0);
    assert.equal(roster.register(supervisor("thinkpad")).peer_id, first.peer_id);
    assert.notEqual(roster.register(supervisor("other")).peer_id, first.peer_id);
    // Same name, other kind: a different peer.
    assert.notEqual(roster.register(runner(appA)).peer_id, first.peer_id);
  });

  it("refreshes on heartbeat, expires silent peers, and 404s heartbeats of forgotten ones", () => {
    const c = clock();
    const roster = new RosterCoordinator({ heartbeatTimeoutMs: 2000, now: c.now });
    roster.register(supervisor("s1"));
    const joinedAt = roster.peers()[0]!.joined_at;
    c.advance(1500);
    roster.heartbeat({ ...supervisor("s1"), tags: ["supervisor", "process", "docker"] });
    c.advance(1500);
    const [peer] = roster.peers();
    assert.deepEqual(peer?.tags, ["supervisor", "process", "docker"], "heartbeat carries the full record");
    assert.equal(peer?.joined_at, joinedAt);
    assert.equal(peer?.last_seen, new Date(1_001_500).toISOString());
    c.advance(600);
    assert.deepEqual(roster.peers(), []);
    assert.throws(
      () => roster.heartbeat(supervisor("s1")),
      (e) => isTabbifyError(e, "PEER_UNKNOWN"),
    );
  });

  it("remembers a host lost without deregistering as down, with its apps, until it returns", () => {
    const c = clock();
    const roster = new RosterCoordinator({ heartbeatTimeoutMs: 2000, now: c.now });
    roster.register(supervisor("s1"));
    roster.register(runner(appA, "s1"));
    const clean = roster.register(runner(appB, "s1"));
    roster.deregister(clean.peer_id);
    c.advance(2500);
    assert.deepEqual(roster.peers(), []);
    assert.equal(roster.hasApp(appA), true, "a lost app is known (502), not unknown (404)");
    assert.equal(roster.hasApp(appB), false, "a deregistered app is gone");
    const { supervisors, down } = roster.topology();
    assert.deepEqual(supervisors, []);
    assert.deepEqual(
      down.map((s) => [s.display_name, s.down_since, s.runners.map((r) => r.app_uuid)]),
      [["s1", new Date(1_002_000).toISOString(), [appA]]],
    );
    roster.register(supervisor("s1"));
    roster.register(runner(appA, "s1"));
    assert.deepEqual(roster.topology().down, [], "back on the roster, no longer down");
    assert.equal(roster.runnerFor(appA)?.parent, "s1");
  });

  it("deregisters by peer id", () => {
    const roster = new RosterCoordinator();
    const { peer_id } = roster.register(supervisor("s1"));
    assert.equal(roster.deregister(peer_id), true);
    assert.equal(roster.deregister(peer_id), false);
    assert.equal(roster.deregister("nope"), false);
    assert.deepEqual(roster.peers(), []);
  });

  it("groups runners under their supervisor and lists orphans when the supervisor goes silent", () => {
    const c = clock();
    const roster = new RosterCoordinator({ heartbeatTimeoutMs: 2000, now: c.now });
    roster.register(supervisor("s1"));
    roster.register(runner(appA, "s1"));
    roster.register(runner(appB));
    assert.deepEqual(
      roster.runnersOf("s1").map((r) => r.app_uuid),
      [appA],
    );
    assert.deepEqual(
      roster.orphanedRunners().map((r) => r.app_uuid),
      [appB],
    );
    let topo = roster.topology();
    assert.equal(topo.supervisors.length, 1);
    assert.equal(topo.supervisors[0]?.display_name, "s1");
    assert.deepEqual(
      topo.supervisors[0]?.runners.map((r) => [r.app_uuid, r.app_ula]),
      [[appA, deriveAppUla(appA)]],
    );
    assert.deepEqual(
      topo.orphaned.map((r) => [r.app_uuid, r.parent]),
      [[appB, null]],
    );

    // Runners keep beating, the supervisor does not.
    c.advance(1500);
    roster.heartbeat(runner(appA, "s1"));
    roster.heartbeat(runner(appB));
    c.advance(1000);
    assert.equal(roster.hasApp(appA), true);
    topo = roster.topology();
    assert.deepEqual(topo.supervisors, []);
    assert.deepEqual(topo.orphaned.map((r) => [r.app_uuid, r.parent]).sort(), [
      [appA, "s1"],
      [appB, null],
    ]);
    assert.deepEqual(
      roster
        .orphanedRunners()
        .map((r) => r.app_uuid)
        .sort(),
      [appA, appB],
    );
  });

  it("answers hasApp for live runners and lost ones, runnerFor for live ones only", () => {
    const c = clock();
    const roster = new RosterCoordinator({ heartbeatTimeoutMs: 2000, now: c.now });
    assert.equal(roster.hasApp(appA), false);
    roster.register(runner(appA, "s1"));
    assert.equal(roster.hasApp(appA), true);
    assert.equal(roster.hasApp(appB), false);
    c.advance(2001);
    assert.equal(roster.runnerFor(appA), undefined);
    assert.equal(roster.hasApp(appA), true);
    c.advance(24 * 3600_000);
    assert.equal(roster.hasApp(appA), false, "forgotten after a day");
  });
});

describe("parsePeerRecord", () => {
  it("accepts a runner named by app_uuid alone and lowercases it", () => {
    const r = parsePeerRecord({
      kind: "runner",
      app_uuid: appA.toUpperCase(),
      address: "a",
      ula: "u",
      version: "1",
      tags: [],
    });
    assert.equal(r.name, appA);
    assert.equal(r.app_uuid, appA);
  });

  it("rejects bad records with a message naming the field", () => {
    const bad: [unknown, RegExp][] = [
      [null, /JSON object/],
      [{ ...supervisor("s"), kind: "peer" }, /kind/],
      [{ ...supervisor("s"), address: 3 }, /address/],
      [{ ...supervisor("s"), tags: "x" }, /tags/],
      [{ ...supervisor(" ") }, /non-empty name/],
      [{ ...runner(appA), app_uuid: "nope", name: undefined }, /not a UUID/],
      [{ ...runner(appA), app_uuid: appB }, /differs/],
    ];
    for (const [body, message] of bad) {
      assert.throws(
        () => parsePeerRecord(body),
        (e) => isTabbifyError(e) && message.test(e.message),
        String(message),
      );
    }
  });
});
