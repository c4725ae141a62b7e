import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { openStore, type Store } from "../store/index.js";
import { MeshAddressBook } from "./address-book.js";
import { mintJoinToken, verifyJoinToken } from "./join-token.js";
import { type MeshCaller, MeshCoordinator } from "./mesh-coordinator.js";
import { fnv1a64, isInfraUla, networkSlot, normalizeUla, REGISTRY_ULA } from "./ula.js";
import type { MeshEvent } from "./wire.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function store(dir?: string): Promise<{ store: Store; dir: string }> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), "mesh-coord-")));
  if (!dir) dirs.push(d);
  return { store: await openStore({ engine: "sqlite", file: join(d, "node.db") }), dir: d };
}

function wgKey(): string {
  return crypto.randomBytes(32).toString("base64");
}

const admin: MeshCaller = { via: "node-key" };
const token = (network: string, tags: string[] = [], requested_ulas: string[] = []): MeshCaller => ({
  via: "token",
  claims: { network, tags, requested_ulas },
});

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("mesh ULAs", () => {
  it("slots are FNV-1a-64 folded to 16 bits, 0 for the empty network", () => {
    assert.equal(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
    assert.equal(networkSlot("a"), 0x19a2);
    assert.equal(networkSlot("acme"), 0xfe5e);
    assert.equal(networkSlot(""), 0);
  });
  it("normalizes and recognizes infra addresses", () => {
    assert.equal(normalizeUla("FD5A:1F00:0000:0003:0:0:0:1"), REGISTRY_ULA);
    assert.equal(isInfraUla("fd5a:1f00:0:3::1"), true);
    assert.equal(isInfraUla("fd5a:1f00:fe5e:0::1"), true);
    assert.equal(isInfraUla("fd5a:1f00:fe5e:1::1"), false);
    assert.throws(
      () => normalizeUla("not-an-address"),
      (e) => isTabbifyError(e, "MESH_ULA_INVALID"),
    );
  });
});

describe("MeshCoordinator", () => {
  it("allocates sequential host addresses in the network's slot, sticky per WireGuard key", async () => {
    const { store: s } = await store();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s) });
    const k1 = wgKey();
    const a = await c.register(
      { wg_public_key: k1, wg_listen_port: 51820, display_name: "a" },
      token("acme"),
    );
    const b = await c.register(
      { wg_public_key: wgKey(), wg_listen_port: 51820, display_name: "b" },
      token("acme"),
    );
    assert.equal(a.ula, "fd5a:1f00:fe5e:1::1");
    assert.equal(b.ula, "fd5a:1f00:fe5e:2::1");
    const again = await c.register(
      { wg_public_key: k1, wg_listen_port: 51821, display_name: "a2" },
      token("acme"),
    );
    assert.equal(again.peer_id, a.peer_id);
    assert.equal(again.ula, a.ula);
    assert.equal(c.peers().length, 2);
    c.close();
    await s.close();
  });

  it("keeps assignments across a restart (a new coordinator over the same store)", async () => {
    const first = await store();
    const k = wgKey();
    let c = new MeshCoordinator({ book: new MeshAddressBook(first.store) });
    const a = await c.register({ wg_public_key: k, wg_listen_port: 1, display_name: "a" }, admin);
    assert.equal(a.ula, "fd5a:1f00:0:1::1");
    c.close();
    await first.store.close();
    const second = await store(first.dir);
    c = new MeshCoordinator({ book: new MeshAddressBook(second.store) });
    const b = await c.register({ wg_public_key: wgKey(), wg_listen_port: 1, display_name: "b" }, admin);
    const a2 = await c.register({ wg_public_key: k, wg_listen_port: 1, display_name: "a" }, admin);
    assert.deepEqual([a2.peer_id, a2.ula], [a.peer_id, a.ula]);
    assert.equal(b.ula, "fd5a:1f00:0:2::1");
    c.close();
    await second.store.close();
  });

  it("grants a free requested ULA, refuses a held one (409) and bumps the allocator past it", async () => {
    const { store: s } = await store();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s) });
    const a = await c.register(
      { wg_public_key: wgKey(), wg_listen_port: 1, display_name: "a", requested_ula: "fd5a:1f00:fe5e:5::1" },
      token("acme"),
    );
    assert.equal(a.ula, "fd5a:1f00:fe5e:5::1");
    await assert.rejects(
      c.register(
        {
          wg_public_key: wgKey(),
          wg_listen_port: 1,
          display_name: "b",
          requested_ula: "fd5a:1f00:fe5e:5::1",
        },
        token("acme"),
      ),
      (e) => isTabbifyError(e, "MESH_ULA_TAKEN"),
    );
    const next = await c.register(
      { wg_public_key: wgKey(), wg_listen_port: 1, display_name: "c" },
      token("acme"),
    );
    assert.equal(next.ula, "fd5a:1f00:fe5e:6::1");
    // Outside its own network's slot, and outside fc00::/7: refused.
    for (const requested_ula of ["fd5a:1f00:1:9::1", "2001:db8::1"]) {
      await assert.rejects(
        c.register(
          { wg_public_key: wgKey(), wg_listen_port: 1, display_name: "d", requested_ula },
          token("acme"),
        ),
        (e) => isTabbifyError(e, "MESH_ULA_INVALID"),
      );
    }
    c.close();
    await s.close();
  });

  it("gives the registry's fixed address only to a token that grants it", async () => {
    const { store: s } = await store();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s) });
    const req = {
      wg_public_key: wgKey(),
      wg_listen_port: 1,
      display_name: "registry",
      requested_ula: REGISTRY_ULA,
    };
    await assert.rejects(c.register(req, token("system", ["registry"])), (e) =>
      isTabbifyError(e, "MESH_FORBIDDEN"),
    );
    const ok = await c.register(req, token("system", ["registry"], [REGISTRY_ULA]));
    assert.equal(ok.ula, REGISTRY_ULA);
    c.close();
    await s.close();
  });

  it("takes network and tags from the token: another network is refused, self tags are limited", async () => {
    const { store: s } = await store();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s) });
    await assert.rejects(
      c.register(
        { wg_public_key: wgKey(), wg_listen_port: 1, display_name: "x", network: "globex" },
        token("acme"),
      ),
      (e) => isTabbifyError(e, "MESH_FORBIDDEN"),
    );
    const r = await c.register(
      { wg_public_key: wgKey(), wg_listen_port: 1, display_name: "x", tags: ["node", "builder"] },
      token("acme", ["supervisor"]),
    );
    const me = c.peers().find((p) => p.peer_id === r.peer_id);
    assert.deepEqual(me?.tags, ["supervisor", "builder"]);
    assert.equal(me?.network, "acme");
    // A token for another network cannot heartbeat or deregister this peer.
    assert.throws(
      () => c.heartbeat({ peer_id: r.peer_id, wg_public_key: me?.wg_public_key }, token("globex")),
      (e) => isTabbifyError(e, "MESH_FORBIDDEN"),
    );
    assert.throws(
      () => c.deregister(r.peer_id, token("globex")),
      (e) => isTabbifyError(e, "MESH_FORBIDDEN"),
    );
    c.close();
    await s.close();
  });

  it("resends the peer list on a heartbeat only to a joiner the stream has not kept up to date", async () => {
    const { store: s } = await store();
    const t = clock();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s), now: t.now });
    const key = wgKey();
    const r = await c.register({ wg_public_key: key, wg_listen_port: 1, display_name: "a" }, admin);
    const beat = (peers_version?: number) =>
      c.heartbeat(
        { peer_id: r.peer_id, wg_public_key: key, ...(peers_version !== undefined ? { peers_version } : {}) },
        admin,
      );
    assert.ok(beat().peers, "no version: the whole list");
    assert.equal(beat(r.peers_version).peers, undefined, "current: nothing");
    await c.register({ wg_public_key: wgKey(), wg_listen_port: 1, display_name: "b" }, admin);
    t.advance(2_000);
    assert.equal(beat(r.peers_version).peers, undefined, "superseded 2 s ago: the stream is bringing it");
    t.advance(9_000);
    assert.equal(beat(r.peers_version).peers?.length, 2, "superseded 11 s ago: the stream was lost");
    assert.ok(beat(c.peersVersion + 5).peers, "a version from before a restart: the whole list");
    c.close();
    await s.close();
  });

  it("drops a silent peer after the timeout, withdrawing its app routes from followers", async () => {
    const { store: s } = await store();
    const t = clock();
    const c = new MeshCoordinator({ book: new MeshAddressBook(s), heartbeatTimeoutMs: 60_000, now: t.now });
    const events: MeshEvent[] = [];
    c.follow((e) => events.push(e));
    const key = wgKey();
    const appUla = "fd5a:1f02:44a5:240b:121a::1";
    const r = await c.register({ wg_public_key: key, wg_listen_port: 1, display_name: "b" }, admin);
    c.heartbeat({ peer_id: r.peer_id, wg_public_key: key, hosted_app_ulas: [appUla] }, admin);
    assert.equal(c.hostOf(appUla)?.peer_id, r.peer_id);
    t.advance(59_000);
    c.heartbeat({ peer_id: r.peer_id, wg_public_key: key, hosted_app_ulas: [appUla] }, admin);
    t.advance(61_000);
    assert.equal(c.hostOf(appUla), undefined);
    assert.deepEqual(
      events.map((e) => e.type),
      ["join", "update", "leave"],
    );
    assert.throws(
      () => c.heartbeat({ peer_id: r.peer_id, wg_public_key: key }, admin),
      (e) => isTabbifyError(e, "PEER_UNKNOWN"),
    );
    // Hosted addresses outside the app block are refused.
    const r2 = await c.register({ wg_public_key: key, wg_listen_port: 1, display_name: "b" }, admin);
    assert.throws(
      () => c.heartbeat({ peer_id: r2.peer_id, wg_public_key: key, hosted_app_ulas: [REGISTRY_ULA] }, admin),
      (e) => isTabbifyError(e, "PEER_INVALID"),
    );
    c.close();
    await s.close();
  });
});

describe("join tokens", () => {
  it("round-trip, and refuse another key's or an expired token", async () => {
    const key = crypto.randomBytes(32);
    const tok = await mintJoinToken(key, {
      network: "acme",
      tags: ["supervisor"],
      requested_ulas: [REGISTRY_ULA],
    });
    assert.deepEqual(await verifyJoinToken(key, tok), {
      network: "acme",
      tags: ["supervisor"],
      requested_ulas: [REGISTRY_ULA],
    });
    await assert.rejects(verifyJoinToken(crypto.randomBytes(32), tok), (e) =>
      isTabbifyError(e, "MESH_TOKEN_INVALID"),
    );
    const short = await mintJoinToken(key, { network: "acme", ttlSecs: 1 });
    await sleep(2100);
    await assert.rejects(verifyJoinToken(key, short), /expired/);
  });
});
