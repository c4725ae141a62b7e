import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { APP_PORT, deriveAppLoopback } from "../core/address.js";
import { NftHop } from "./nft-hop.js";

/**
 * The kernel hop against real nftables: needs root (CAP_NET_ADMIN) and `nft`
 * (apt-get install nftables); fails saying so where either is missing.
 */

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`)),
        );
      })
      .on("error", reject);
  });
}

function workload(name: string): Promise<http.Server> {
  const server = http.createServer((_req, res) => res.end(name));
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

const portOf = (s: http.Server) => (s.address() as AddressInfo).port;

describe("nftables kernel hop", () => {
  const table = `tabbify_test_${crypto.randomBytes(4).toString("hex")}`;
  const uuid = crypto.randomUUID();
  const address = deriveAppLoopback(uuid);
  const url = `http://${address}:${APP_PORT}/`;
  let blue: http.Server;
  let green: http.Server;
  let hop: NftHop;

  before(async () => {
    const avail = await NftHop.available();
    if (!avail.ok)
      throw new Error(`the kernel hop tests need root and nft (apt-get install nftables): ${avail.reason}`);
    blue = await workload("blue");
    green = await workload("green");
    hop = new NftHop({ table, appPort: APP_PORT });
  });

  after(async () => {
    await hop?.destroy().catch(() => {});
    blue?.close();
    green?.close();
  });

  it("adds a rule that sends the app's address:8730 to its workload", async () => {
    await hop.set(uuid, { address, port: portOf(blue) });
    assert.equal(await get(url), "blue");
  });

  it("swaps atomically under a request loop with zero failures; open connections stay on the old workload", async () => {
    // A keep-alive connection opened before the swap keeps its conntrack mapping.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const viaAgent = () =>
      new Promise<string>((resolve, reject) => {
        http
          .get(url, { agent }, (res) => {
            let body = "";
            res.on("data", (c: Buffer) => (body += c));
            res.on("end", () => resolve(body));
          })
          .on("error", reject);
      });
    assert.equal(await viaAgent(), "blue");

    let failures = 0;
    let done = 0;
    let stop = false;
    const seen = new Set<string>();
    const loop = async () => {
      while (!stop) {
        try {
          seen.add(await get(url));
        } catch {
          failures++;
        }
        done++;
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    await new Promise((r) => setTimeout(r, 200));
    await hop.set(uuid, { address, port: portOf(green) });
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(loops);
    assert.equal(failures, 0, `${failures} of ${done} requests failed across the swap`);
    assert.ok(seen.has("green"), "new connections reach the new workload");
    assert.equal(await get(url), "green");
    assert.equal(await viaAgent(), "blue", "the established connection finishes on the old workload");
    agent.destroy();
  });

  it("removes the rule when the app stops", async () => {
    await hop.remove(uuid);
    await assert.rejects(get(url), /ECONNREFUSED/);
  });

  it("reconciles a table a killed supervisor left behind with the records", async () => {
    await hop.set(uuid, { address, port: portOf(blue) });
    const stale = crypto.randomUUID();
    await hop.set(stale, { address: deriveAppLoopback(stale), port: portOf(green) });
    // A fresh supervisor process knows only its records: the uuid, now on green.
    const restarted = new NftHop({ table, appPort: APP_PORT });
    await restarted.reconcile(new Map([[uuid, { address, port: portOf(green) }]]));
    const listing = execFileSync("nft", ["list", "table", "ip", table], { encoding: "utf8" });
    assert.ok(!listing.includes(deriveAppLoopback(stale)), listing);
    assert.equal(await get(url), "green");
  });
});
