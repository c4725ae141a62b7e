import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HANDSHAKE_STALE_SECS, peerPaths } from "./joiner.js";
import type { MeshPeerInfo } from "./wire.js";
import { parseLatestHandshakes } from "./wireguard.js";

const peer = (peer_id: string, wg_public_key: string) => ({ peer_id, wg_public_key }) as MeshPeerInfo;

describe("peer paths from WireGuard handshakes", () => {
  it("parses `wg show <if> latest-handshakes`", () => {
    const parsed = parseLatestHandshakes("AAAA=\t1700000000\nBBBB=\t0\n\ngarbage\n");
    assert.deepEqual(
      [...parsed],
      [
        ["AAAA=", 1700000000],
        ["BBBB=", 0],
      ],
    );
  });

  it("calls a fresh handshake direct, and a stale, missing or never-made one down", () => {
    const now = 1_700_000_000;
    const handshakes = new Map([
      ["fresh", now - 30],
      ["edge", now - HANDSHAKE_STALE_SECS],
      ["stale", now - HANDSHAKE_STALE_SECS - 1],
      ["never", 0],
    ]);
    const paths = peerPaths(
      [peer("a", "fresh"), peer("b", "edge"), peer("c", "stale"), peer("d", "never"), peer("e", "unknown")],
      handshakes,
      now,
    );
    assert.deepEqual(
      paths.map((p) => `${p.peer_id}:${p.path}`),
      ["a:direct", "b:direct", "c:down", "d:down", "e:down"],
    );
  });
});
