import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { APP_PORT, deriveAppLoopback, deriveAppUla } from "../core/address.js";
import { sleep } from "../core/sleep.js";
import { establishedTo, KernelHop } from "../runner/kernel-hop.js";
import { NftHop } from "./nft-hop.js";

/**
 * The kernel hop against real nftables, IPv4 (loopback twins) and IPv6 (a ULA on lo, workload on
 * ::1): needs root (CAP_NET_ADMIN), `nft` (apt-get install nftables) and `ip`; fails saying so.
 */

function get(url: string, agent: http.Agent | false = false): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
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

function workload(name: string, host: string): Promise<http.Server> {
  const server = http.createServer((_req, res) => res.end(name));
  // The swap test keeps one connection idle across a request loop that may outlast Node's 5 s
  // default on a loaded machine; closed by the server, it would come back on the new workload.
  server.keepAliveTimeout = 60_000;
  return new Promise((r) => server.listen(0, host, () => r(server)));
}

const portOf = (s: http.Server) => (s.address() as AddressInfo).port;

async function loopDuring(
  url: string,
  work: () => Promise<void>,
): Promise<{ failures: number; done: number; seen: Set<string> }> {
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
  await sleep(200);
  await work();
  await sleep(300);
  stop = true;
  await Promise.all(loops);
  return { failures, done, seen };
}

for (const family of [4, 6] as const) {
  describe(`nftables kernel hop, IPv${family}`, () => {
    const table = `tabbify_test_${crypto.randomBytes(4).toString("hex")}`;
    const uuid = crypto.randomUUID();
    const appHost = family === 4 ? deriveAppLoopback(uuid) : deriveAppUla(uuid);
    const workloadHost = family === 4 ? "127.0.0.1" : "::1";
    const url = `http://${family === 4 ? appHost : `[${appHost}]`}:${APP_PORT}/`;
    let blue: http.Server;
    let green: http.Server;
    let hop: NftHop;
    let runnerSide: KernelHop;

    before(async () => {
      const avail = await NftHop.available();
      if (!avail.ok)
        throw new Error(`the kernel hop tests need root and nft (apt-get install nftables): ${avail.reason}`);
      if (family === 6) execFileSync("ip", ["-6", "addr", "add", `${appHost}/128`, "dev", "lo", "nodad"]);
      blue = await workload("blue", workloadHost);
      green = await workload("green", workloadHost);
      hop = new NftHop({ table });
      await hop.ensure();
      runnerSide = new KernelHop(table, { host: appHost, port: APP_PORT });
    });

    after(async () => {
      await hop?.destroy().catch(() => {});
      if (family === 6) {
        try {
          execFileSync("ip", ["-6", "addr", "del", `${appHost}/128`, "dev", "lo"], { stdio: "ignore" });
        } catch {
          // never added
        }
      }
      blue?.closeAllConnections();
      green?.closeAllConnections();
      blue?.close();
      green?.close();
    });

    it("maps the app's address:8730 to its workload", async () => {
      await runnerSide.point({ host: workloadHost, port: portOf(blue) });
      assert.equal(await get(url), "blue");
    });

    it("swaps atomically under a request loop with zero failures; an open connection stays on the old workload", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      assert.equal(await get(url, agent), "blue");
      const { failures, done, seen } = await loopDuring(url, () =>
        runnerSide.point({ host: workloadHost, port: portOf(green) }),
      );
      assert.equal(failures, 0, `${failures} of ${done} requests failed across the swap`);
      assert.ok(seen.has("green"), "new connections reach the new workload");
      assert.equal(await get(url), "green");
      assert.equal(await get(url, agent), "blue", "the established connection finishes on the old workload");
      assert.ok(
        (await establishedTo(workloadHost, portOf(blue))) >= 1,
        "the kept connection is counted on blue",
      );
      agent.destroy();
    });

    it("removes the mapping when the app stops", async () => {
      await runnerSide.clear();
      await assert.rejects(get(url), /ECONNREFUSED/);
      // Removing what is gone already is no error.
      await runnerSide.clear();
    });

    it("reconciles what a killed supervisor left with the records, keeping the table's chains", async () => {
      await runnerSide.point({ host: workloadHost, port: portOf(blue) });
      const stale = crypto.randomUUID();
      const staleHost = family === 4 ? deriveAppLoopback(stale) : deriveAppUla(stale);
      await hop.set({
        appHost: staleHost,
        appPort: APP_PORT,
        target: { host: workloadHost, port: portOf(green) },
      });
      // A fresh supervisor process knows only its records: the uuid, now on green.
      const restarted = new NftHop({ table });
      await restarted.reconcile([
        { appHost, appPort: APP_PORT, target: { host: workloadHost, port: portOf(green) } },
      ]);
      const listing = execFileSync("nft", ["list", "table", "inet", table], { encoding: "utf8" });
      assert.ok(!listing.includes(staleHost), listing);
      assert.equal(await get(url), "green");
      // ensure() on a live table keeps the elements.
      await restarted.ensure();
      assert.equal(await get(url), "green");
    });

    it("refuses a mapping across address families", async () => {
      const other = family === 4 ? "::1" : "127.0.0.1";
      await assert.rejects(runnerSide.point({ host: other, port: 1234 }), /IPv/);
    });
  });
}
