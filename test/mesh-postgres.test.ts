import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, test } from "node:test";
import { MeshAddressBook } from "../src/mesh/address-book.js";
import { type MeshCaller, MeshCoordinator } from "../src/mesh/mesh-coordinator.js";
import { openStore, type Store } from "../src/store/index.js";
import { freshDatabaseUrl } from "./support/postgres.js";

/**
 * Two nodes sharing one Postgres database share the mesh's address assignments: racing
 * registrations on both never get one address twice, and a WireGuard key keeps its peer id and
 * address whichever node it registers with.
 */
const stores: Store[] = [];
const coordinators: MeshCoordinator[] = [];
after(async () => {
  for (const c of coordinators) c.close();
  for (const s of stores) await s.close();
});

const admin: MeshCaller = { via: "node-key" };
const wgKey = () => crypto.randomBytes(32).toString("base64");

test("two nodes on one Postgres hand out each address once, and keep a key's address sticky across them", async () => {
  const url = await freshDatabaseUrl();
  const [one, two] = await Promise.all([1, 2].map(() => openStore({ engine: "postgres", url })));
  stores.push(one as Store, two as Store);
  const [a, b] = [one, two].map((s) => new MeshCoordinator({ book: new MeshAddressBook(s as Store) })) as [
    MeshCoordinator,
    MeshCoordinator,
  ];
  coordinators.push(a, b);

  const keys = Array.from({ length: 20 }, wgKey);
  const replies = await Promise.all(
    keys.map((k, i) =>
      (i % 2 === 0 ? a : b).register(
        { wg_public_key: k, wg_listen_port: 51820, display_name: `h${i}`, network: "acme" },
        admin,
      ),
    ),
  );
  const ulas = replies.map((r) => r.ula);
  assert.equal(new Set(ulas).size, keys.length, `every address once: ${ulas.join(" ")}`);
  for (const ula of ulas) assert.match(ula, /^fd5a:1f00:[0-9a-f]{1,4}:[0-9a-f]{1,4}::1$/);

  // The key that registered on node a registers on node b: same peer id, same address.
  const again = await b.register(
    { wg_public_key: keys[0] as string, wg_listen_port: 51820, display_name: "h0", network: "acme" },
    admin,
  );
  assert.deepEqual([again.peer_id, again.ula], [replies[0]?.peer_id, replies[0]?.ula]);

  // A new key asking for an address a live peer holds is refused (409).
  const taken = replies[1]?.ula as string;
  await assert.rejects(
    b.register(
      {
        wg_public_key: wgKey(),
        wg_listen_port: 51820,
        display_name: "thief",
        network: "acme",
        requested_ula: taken,
      },
      admin,
    ),
    (err: { code?: string }) => err.code === "MESH_ULA_TAKEN",
  );
});
