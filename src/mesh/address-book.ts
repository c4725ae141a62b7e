import crypto from "node:crypto";
import { v7 as uuidV7 } from "uuid";
import { TabbifyError } from "../core/errors.js";
import { isUniqueViolation, type Store, type StoreTransaction } from "../store/index.js";
import { isInfraUla, isUla, networkSlot, normalizeUla, peerSlot, peerUla } from "./ula.js";

export interface Assignment {
  peer_id: string;
  ula: string;
  network: string;
  wg_public_key: string;
}

export interface AllocateRequest {
  wgPublicKey: string;
  network: string;
  requestedUla?: string;
  /** Infra ULAs the caller's token grants (canonical text). */
  grantedUlas: readonly string[];
  /** Whether the current holder of a ULA is a live peer (a stale holder is evicted). */
  isLive: (peerId: string) => boolean;
}

const JOIN_KEY = "join_token_key";
const MAX_IDX = 0xffff;

/**
 * Sticky peer addresses, kept in the node's store: the same WireGuard key always gets the same
 * peer id and ULA, across restarts and (on Postgres) across nodes sharing the database. Every
 * allocation runs under one serialize key, so two nodes never hand out one address twice.
 */
export class MeshAddressBook {
  constructor(private readonly store: Store) {}

  async allocate(req: AllocateRequest): Promise<Assignment> {
    return this.store.transaction(async (trx) => {
      await this.store.serialize(trx, "mesh-allocate");
      const existing = await trx
        .selectFrom("mesh_peers")
        .selectAll()
        .where("wg_public_key", "=", req.wgPublicKey)
        .executeTakeFirst();
      if (existing) {
        if (existing.network !== req.network) {
          throw new TabbifyError(
            "MESH_FORBIDDEN",
            "this WireGuard key joined another network; a key belongs to one network",
          );
        }
        return pick(existing);
      }
      const slot = networkSlot(req.network);
      const ula =
        req.requestedUla !== undefined
          ? await this.claimRequested(trx, req, slot)
          : await this.nextFree(trx, req.network, slot);
      const row = {
        wg_public_key: req.wgPublicKey,
        peer_id: uuidV7(),
        ula,
        network: req.network,
        created_at: new Date().toISOString(),
      };
      await trx.insertInto("mesh_peers").values(row).execute();
      return pick(row);
    });
  }

  /** The join-token signing key, created on first use and shared through the store. */
  async joinKey(): Promise<Buffer> {
    const read = () =>
      this.store.db
        .selectFrom("mesh_secrets")
        .select("value")
        .where("name", "=", JOIN_KEY)
        .executeTakeFirst();
    let row = await read();
    if (!row) {
      try {
        await this.store.db
          .insertInto("mesh_secrets")
          .values({
            name: JOIN_KEY,
            value: crypto.randomBytes(32).toString("base64"),
            created_at: new Date().toISOString(),
          })
          .execute();
      } catch (err) {
        // Another node created it first: use theirs.
        if (!isUniqueViolation(err)) throw err;
      }
      row = await read();
    }
    if (!row) throw new Error("mesh join key missing after insert");
    return Buffer.from(row.value, "base64");
  }

  private async claimRequested(trx: StoreTransaction, req: AllocateRequest, slot: number): Promise<string> {
    const ula = normalizeUla(req.requestedUla as string);
    if (!isUla(ula)) throw new TabbifyError("MESH_ULA_INVALID", `requested_ula ${ula} is not in fc00::/7`);
    if (isInfraUla(ula)) {
      if (!req.grantedUlas.includes(ula)) {
        throw new TabbifyError(
          "MESH_FORBIDDEN",
          `${ula} is a fixed infrastructure address; the join token does not grant it`,
        );
      }
    } else {
      const p = peerSlot(ula);
      if (ula.startsWith("fd5a:1f00:") && (p === undefined || p.slot !== slot)) {
        throw new TabbifyError(
          "MESH_ULA_INVALID",
          `requested_ula ${ula} is outside this network's host block fd5a:1f00:${slot.toString(16)}::/48`,
        );
      }
    }
    const holder = await trx.selectFrom("mesh_peers").selectAll().where("ula", "=", ula).executeTakeFirst();
    if (holder) {
      if (req.isLive(holder.peer_id)) {
        throw new TabbifyError("MESH_ULA_TAKEN", `requested_ula ${ula} is held by another live peer`);
      }
      await trx.deleteFrom("mesh_peers").where("wg_public_key", "=", holder.wg_public_key).execute();
    }
    const p = peerSlot(ula);
    if (p && p.slot === slot && !isInfraUla(ula)) {
      const next = await this.nextIdx(trx, req.network);
      if (p.idx >= next) await this.setNextIdx(trx, req.network, p.idx + 1);
    }
    return ula;
  }

  private async nextFree(trx: StoreTransaction, network: string, slot: number): Promise<string> {
    for (let idx = Math.max(1, await this.nextIdx(trx, network)); idx <= MAX_IDX; idx++) {
      const ula = peerUla(slot, idx);
      const taken = await trx
        .selectFrom("mesh_peers")
        .select("peer_id")
        .where("ula", "=", ula)
        .executeTakeFirst();
      if (taken) continue;
      await this.setNextIdx(trx, network, idx + 1);
      return ula;
    }
    throw new TabbifyError("MESH_FULL", `network "${network}" has no free host address left`);
  }

  private async nextIdx(trx: StoreTransaction, network: string): Promise<number> {
    const row = await trx
      .selectFrom("mesh_networks")
      .select("next_idx")
      .where("network", "=", network)
      .executeTakeFirst();
    return row ? Number(row.next_idx) : 1;
  }

  private async setNextIdx(trx: StoreTransaction, network: string, next: number): Promise<void> {
    await trx
      .insertInto("mesh_networks")
      .values({ network, next_idx: next })
      .onConflict((oc) => oc.column("network").doUpdateSet({ next_idx: next }))
      .execute();
  }
}

function pick(row: Assignment): Assignment {
  return { peer_id: row.peer_id, ula: row.ula, network: row.network, wg_public_key: row.wg_public_key };
}
