import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readProcStat } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { getText, listenAsApp, registerLocalRunner } from "./support/local-apps.js";

/**
 * Each shipped engine's own duties as the node's edge (nginx, caddy, haproxy): routes follow the
 * roster within a second, a refused config never replaces the live one, a dead engine is restarted
 * and /health and /api/ready say so, reloads drop nothing.
 */

const engines = [
  { plane: "nginx", version: ["nginx", "-v"], configFile: "nginx.conf", install: "nginx" },
  { plane: "caddy", version: ["caddy", "version"], configFile: "caddy.json", install: "caddy" },
  { plane: "haproxy", version: ["haproxy", "-v"], configFile: "haproxy.cfg", install: "haproxy" },
] as const;

function requireEngine(e: (typeof engines)[number]): void {
  try {
    execFileSync(e.version[0], e.version.slice(1), { stdio: "ignore" });
  } catch {
    throw new Error(`these tests need ${e.version[0]} on PATH: apt-get install ${e.install}`);
  }
}

/** Pids of processes in a process group that are not zombies (this container's init reaps none). */
async function liveInGroup(pgid: number): Promise<number[]> {
  const live: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readProcStat(entry);
    if (stat?.pgrp === pgid && stat.state !== "Z") live.push(Number(entry));
  }
  return live;
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - start;
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

for (const engine of engines)
  describe(`data plane ${engine.plane}: the edge`, () => {
    const uuid = crypto.randomUUID();
    let node: RunningNode;
    let app: http.Server;
    let dataDir: string;

    before(async () => {
      requireEngine(engine);
      dataDir = await mkdtemp(join(tmpdir(), "tabbify-edge-test-"));
      app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
      await listenAsApp(app, uuid);
      node = await startNode({
        host: "127.0.0.1",
        port: 0,
        dataDir,
        httpLogLevel: "silent",
        dataPlane: engine.plane,
      });
    });

    after(async () => {
      await node?.close();
      await new Promise((r) => app?.close(r));
      await rm(dataDir, { recursive: true, force: true });
    });

    it("keeps its files in <data>/edge, mode 0700, and moves the API to a loopback port", async () => {
      const mode = (await stat(join(dataDir, "edge"))).mode & 0o777;
      assert.equal(mode, 0o700);
      assert.notEqual(node.apiUrl, node.url);
      const health = JSON.parse((await getText(`${node.url}/health`)).body) as {
        data_plane: { engine: string };
      };
      assert.equal(health.data_plane.engine, engine.plane);
    });

    it("adds a route within a second of the roster (5 s allowed on a loaded machine) and removes it when the runner leaves", async (t) => {
      // Not on the roster: nginx hands it to the node, which dials the address (it answers).
      const reg = registerLocalRunner(node.coordinator, uuid);
      const took = await until("the engine to carry the route", 5000, async () => {
        const conf = await readFile(join(dataDir, "edge", engine.configFile), "utf8");
        return conf.includes(uuid) && node.edge?.status().routes === 1;
      });
      t.diagnostic(`route landed in ${took} ms`);
      await node.edge?.settle();
      assert.equal((await getText(`${node.url}/app/${uuid}/x`)).body, "app saw /x");

      node.coordinator.deregister(reg.peer_id);
      await until("the engine to drop the route", 5000, async () => {
        const conf = await readFile(join(dataDir, "edge", engine.configFile), "utf8");
        return !conf.includes(uuid);
      });
      await node.edge?.settle();
      // Off the roster, the app still answers at its address: the node's fallback dials it.
      assert.equal((await getText(`${node.url}/app/${uuid}/y`)).body, "app saw /y");
    });

    it("never replaces the live config with one the engine refuses", async () => {
      const edge = node.edge!;
      await edge.settle();
      const before = await readFile(join(dataDir, "edge", engine.configFile), "utf8");
      await assert.rejects(edge.applyText("events {}\nhttp { this is not a config; }\n"), (err: Error) => {
        assert.match(err.message, new RegExp(`${engine.plane} .*refused`));
        return true;
      });
      assert.equal(await readFile(join(dataDir, "edge", engine.configFile), "utf8"), before);
      assert.ok(edge.status().last_refused, "the refusal is reported");
      assert.equal((await getText(`${node.url}/health`)).status, 200);
    });

    // A known limit kept visible: Caddy 2.6 fails a few requests across /load reloads (README).
    const caddyReloads =
      engine.plane === "caddy" ? { todo: "Caddy 2.6 drops some requests across reloads" } : {};
    it("reloads without dropping requests in flight or failing new ones", caddyReloads, async () => {
      registerLocalRunner(node.coordinator, uuid);
      await node.edge!.settle();
      let failures = 0;
      let done = 0;
      let stop = false;
      const loop = async () => {
        while (!stop) {
          const r = await getText(`${node.url}/app/${uuid}/loop`).catch(() => ({ status: 0, body: "" }));
          if (r.status !== 200) failures++;
          done++;
        }
      };
      const loops = [loop(), loop(), loop(), loop()];
      for (let i = 0; i < 5; i++) {
        registerLocalRunner(node.coordinator, crypto.randomUUID());
        await node.edge!.settle();
      }
      stop = true;
      await Promise.all(loops);
      assert.ok(done > 10, `only ${done} requests ran`);
      assert.equal(failures, 0, `${failures} of ${done} requests failed across 5 reloads`);
    });

    it("restarts the engine when it dies and says so in /health and /api/ready", async () => {
      const edge = node.edge!;
      const pid = edge.pid()!;
      const restartsBefore = edge.status().restarts;
      process.kill(pid, "SIGKILL");
      await until("a new engine process", 10_000, async () => edge.pid() !== pid && edge.status().running);
      assert.equal(edge.status().restarts, restartsBefore + 1);
      // The killed master's workers went with it (they would keep serving the old config).
      assert.deepEqual(await liveInGroup(pid), [], "no process of the killed engine is left");
      await until(
        "the engine to serve again",
        10_000,
        async () => (await getText(`${node.url}/health`)).status === 200,
      );
      const health = JSON.parse((await getText(`${node.apiUrl}/health`)).body) as {
        data_plane: { restarts: number; running: boolean };
      };
      assert.equal(health.data_plane.restarts, restartsBefore + 1);
      assert.equal(health.data_plane.running, true);
      const ready = JSON.parse((await getText(`${node.apiUrl}/api/ready`)).body) as {
        status: string;
        checks: Record<string, { ok: boolean; detail?: string }>;
      };
      assert.equal(ready.status, "ready");
      assert.equal(ready.checks.data_plane?.ok, true);
      assert.match(
        ready.checks.data_plane?.detail ?? "",
        new RegExp(`restarted ${restartsBefore + 1} times`),
      );
    });

    it("answers /api/ready 503 naming the engine while none runs", async () => {
      // Last in the file: the engine is stopped for good (the node's close() later is a no-op for it).
      await node.edge!.close();
      const res = await getText(`${node.apiUrl}/api/ready`);
      assert.equal(res.status, 503, res.body);
      const body = JSON.parse(res.body) as { failing: string[]; checks: Record<string, { error?: string }> };
      assert.deepEqual(body.failing, ["data_plane"]);
      assert.match(
        body.checks.data_plane?.error ?? "",
        new RegExp(`the ${engine.plane} engine is not running`),
      );
    });
  });
