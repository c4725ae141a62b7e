/**
 * The kernel hop end to end: a real `tabbify supervisor --kernel-hop on` (root and `nft` needed,
 * `apt-get install nftables`; the test fails saying so), real runners and process workloads. The
 * app's mapping is added at start, swapped atomically under a request loop with zero failures
 * (fresh connections, and keep-alive clients whose pooled connections end in the old workload),
 * reconciled after the supervisor's kill -9, and removed on stop and purge.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { kernelHopTable } from "../src/main/kernel-hop-option.js";
import { nftAvailable } from "../src/runner/kernel-hop.js";
import { NftHop } from "../src/supervisor/nft-hop.js";
import {
  fastSupervisorArgs,
  httpGet,
  processSpec,
  randomUuid,
  SupervisorUnderTest,
  sleep,
  until,
} from "./runtime-plane-support.js";

/** A fresh connection per request, so each one meets the kernel's current mapping. */
function get(addr: string, path = "/"): Promise<{ status: number; body: string }> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path, agent: false, timeout: 5_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

function listing(table: string): string {
  return execFileSync("nft", ["list", "table", "inet", table], { encoding: "utf8" });
}

/** The workload port the app's chain DNATs to, or undefined when its chain is empty or absent. */
function mappedPort(table: string, appHost: string): number | undefined {
  const chain = `app_${appHost
    .split(".")
    .map((b) => Number(b).toString(16).padStart(2, "0"))
    .join("")}_${APP_PORT}`;
  const text = listing(table);
  const at = text.indexOf(`chain ${chain} {`);
  if (at < 0) return undefined;
  const body = text.slice(at, text.indexOf("}", at));
  const port = /dnat ip to 127\.0\.0\.1:(\d+)/.exec(body)?.[1];
  return port ? Number(port) : undefined;
}

describe("kernel hop through a real supervisor", () => {
  const sup = new SupervisorUnderTest([
    ...fastSupervisorArgs(10_000),
    "--kernel-hop",
    "on",
    "--warm-spares",
    "0",
  ]);
  const table = kernelHopTable(sup.dataDir);
  const uuid = randomUuid();
  const appHost = deriveAppLoopback(uuid);
  let addr = "";

  before(async () => {
    const avail = await nftAvailable();
    if (!avail.ok)
      throw new Error(`the kernel hop needs root and nft (apt-get install nftables): ${avail.reason}`);
    await sup.start();
  });

  after(async () => {
    await sup.cleanup();
    await new NftHop({ table }).destroy().catch(() => {});
  });

  test("a start maps the app's address:8730 to its workload's private port", async () => {
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec({ VERSION: "1" }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    addr = started.json.bound_addr as string;
    const port = await until("the app's mapping", async () => mappedPort(table, appHost));
    assert.ok(port > 0 && port !== APP_PORT, listing(table));
    const res = await get(addr);
    assert.equal(JSON.parse(res.body).version, "1");
  });

  test("a swap under a request loop: zero failures, new connections on the new version, the mapping moved", async () => {
    const before = mappedPort(table, appHost);
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const versionsAfter = new Set<string>();
    let swappedAt = Number.POSITIVE_INFINITY;
    const client = async () => {
      while (!stop) {
        const sentAt = performance.now();
        try {
          const res = await get(addr, Math.random() < 0.2 ? "/slow?ms=150" : "/");
          if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
          else {
            ok++;
            if (sentAt > swappedAt) versionsAfter.add(JSON.parse(res.body).version as string);
          }
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const clients = Array.from({ length: 6 }, client);
    await sleep(300);
    const deployed = await sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: "2" }));
    swappedAt = performance.now();
    assert.equal(deployed.status, 200, JSON.stringify(deployed.json));
    await sleep(400);
    stop = true;
    await Promise.all(clients);
    console.log(`# kernel-hop swap under load: ${ok} requests ok, ${failures.length} failed`);
    assert.deepEqual(failures, []);
    assert.deepEqual([...versionsAfter], ["2"]);
    const after = mappedPort(table, appHost);
    assert.ok(after !== undefined && after !== before, `mapping ${before} → ${after}`);
  });

  test("keep-alive clients lose no request across swaps; every request sent after a deploy answered is served by the new version", async () => {
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const answers: { sentAt: number; version: string }[] = [];
    // Pooled connections (runtime-plane-support's keep-alive agent), as a mesh peer would dial.
    const client = async () => {
      while (!stop) {
        const sentAt = performance.now();
        try {
          const res = await httpGet(addr, Math.random() < 0.2 ? "/slow?ms=150" : "/");
          if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
          else {
            ok++;
            answers.push({ sentAt, version: JSON.parse(res.body).version as string });
          }
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await sleep(300);
    const deployedAt: number[] = [];
    for (const version of ["3", "4"]) {
      const deployed = await sup.call("POST", `/v1/apps/${uuid}/deploy`, processSpec({ VERSION: version }));
      assert.equal(deployed.status, 200, JSON.stringify(deployed.json));
      deployedAt.push(performance.now());
      await sleep(300);
    }
    stop = true;
    await Promise.all(clients);
    console.log(`# kernel-hop swaps with 8 keep-alive clients: ${ok} requests ok, ${failures.length} failed`);
    assert.deepEqual(failures, []);
    const after = (t: number) => new Set(answers.filter((a) => a.sentAt > t).map((a) => a.version));
    assert.deepEqual([...after(deployedAt[0]!)].sort(), ["3", "4"]);
    assert.deepEqual([...after(deployedAt[1]!)], ["4"]);
    const health = await sup.call("GET", `/v1/apps/${uuid}`);
    assert.equal(health.json.hop, "kernel", JSON.stringify(health.json));
  });

  test("a supervisor kill -9 and restart reconciles the table: stale mappings go, the live app keeps its own", async () => {
    await sup.kill9();
    // What a supervisor killed mid-way could leave: the mapping of an app it no longer has.
    const ghost = randomUuid();
    await new NftHop({ table }).set({
      appHost: deriveAppLoopback(ghost),
      appPort: APP_PORT,
      target: { host: "127.0.0.1", port: 9 },
    });
    assert.ok(listing(table).includes(deriveAppLoopback(ghost)));
    const live = mappedPort(table, appHost);
    await sup.start();
    await until("the ghost mapping to go", async () =>
      listing(table).includes(deriveAppLoopback(ghost)) ? undefined : true,
    );
    assert.equal(mappedPort(table, appHost), live, "the adopted app keeps its mapping");
    assert.equal(JSON.parse((await get(addr)).body).version, "4");
  });

  test("purge removes the app's mapping", async () => {
    const other = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${other}/start`, processSpec({ VERSION: "1" }));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const otherHost = deriveAppLoopback(other);
    await until("the other app's mapping", async () => mappedPort(table, otherHost));
    assert.equal((await sup.call("POST", `/v1/apps/${other}/purge`)).status, 200);
    assert.equal(mappedPort(table, otherHost), undefined, listing(table));
    assert.ok(!listing(table).includes(otherHost), listing(table));
  });

  test("stop removes the app's mapping", async () => {
    assert.equal((await sup.call("POST", `/v1/apps/${uuid}/stop`)).status, 200);
    assert.equal(mappedPort(table, appHost), undefined, listing(table));
    assert.ok(!listing(table).includes(appHost), listing(table));
    await assert.rejects(get(addr), /ECONNREFUSED/);
  });
});
