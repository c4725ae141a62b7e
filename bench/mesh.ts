/**
 * `npm run bench:mesh`: one coordinator (a real `tabbify node` process with its store) under
 * simulated peers that register and heartbeat at the mesh's interval, while clients follow the
 * peers stream. It prints the coordinator's CPU per heartbeat, its RSS, and the stream's fan-out
 * latency (a heartbeat that changes a peer's app addresses, until each follower hears it).
 *
 * The anchor, measured in the same run against the same process: the same number of
 * unauthenticated `GET /api/healthz` at the same rate (CPU per request, and request latency).
 *
 * BENCH_MESH_PEERS (default 1000), BENCH_MESH_FOLLOWERS (50), BENCH_MESH_INTERVAL_SECS (20),
 * BENCH_MESH_SECONDS (60: how long the heartbeat phase runs).
 */
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningProcess, repoRoot, spawnProcess, tempDir, waitForHttp } from "../test/support/tools.js";

const peersWanted = Number(process.env.BENCH_MESH_PEERS ?? "1000");
const followers = Number(process.env.BENCH_MESH_FOLLOWERS ?? "50");
const intervalSecs = Number(process.env.BENCH_MESH_INTERVAL_SECS ?? "20");
const phaseSecs = Number(process.env.BENCH_MESH_SECONDS ?? "60");
const NODE_KEY = "bench-mesh-node-key";
/** One heartbeat in this many changes the peer's app addresses (and so reaches every follower). */
const CHANGE_EVERY = 10;

const ticksPerSec = 100;

function cpuSecs(pid: number): number {
  const stat = readProcStatSync(pid);
  if (!stat) throw new Error(`process ${pid} is gone`);
  return (stat.utimeTicks + stat.stimeTicks) / ticksPerSec;
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const wgKey = () => crypto.randomBytes(32).toString("base64");
const appUla = (i: number, n: number) =>
  `fd5a:1f02:${((i >> 16) & 0xffff).toString(16)}:${(i & 0xffff).toString(16)}::${((n % 0xfff) + 1).toString(16)}`;

/** Runs `count` calls of `call`, spread evenly over `secs`, `concurrency` at a time at most. */
async function paced(count: number, secs: number, call: (i: number) => Promise<void>): Promise<void> {
  const start = performance.now();
  const gapMs = (secs * 1000) / count;
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    const due = start + i * gapMs;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const p = call(i).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 64) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

async function main(): Promise<void> {
  const data = await tempDir("bench-mesh");
  const port = 20000 + Math.floor(Math.random() * 20000);
  const url = `http://127.0.0.1:${port}`;
  const node: RunningProcess = spawnProcess(
    process.execPath,
    [
      join(repoRoot, "dist", "src", "main", "tabbify.js"),
      "node",
      "--listen",
      `127.0.0.1:${port}`,
      "--data",
      data.path,
      // Generous: on a loaded machine registering every peer can outlast three intervals, and
      // this bench measures the steady state, not expiry.
      "--peer-timeout-secs",
      String(Math.max(600, intervalSecs * 3)),
    ],
    { env: { ...process.env, TABBIFY_NODE_KEY: NODE_KEY } },
  );
  const pid = node.child.pid as number;
  const auth = { authorization: `Bearer ${NODE_KEY}`, "content-type": "application/json" };
  try {
    await waitForHttp(`${url}/health`, 30_000);

    // Followers of the peers stream, each recording when it hears every update.
    const heard: number[] = [];
    /** The latest peers_version a follower heard: a joiner follows the stream and sends it. */
    let streamVersion: number | undefined;
    const sentAt = new Map<string, number>();
    const streams: AbortController[] = [];
    for (let f = 0; f < followers; f++) {
      const ac = new AbortController();
      streams.push(ac);
      const res = await fetch(`${url}/v1/mesh/peers/stream`, { headers: auth, signal: ac.signal });
      void (async () => {
        let buffer = "";
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            buffer += Buffer.from(chunk).toString("utf8");
            let cut = buffer.indexOf("\n\n");
            while (cut >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              cut = buffer.indexOf("\n\n");
              // Keep-alive comments (": keepalive") carry no data.
              const dataAt = block.indexOf("data: ");
              if (dataAt < 0) continue;
              const event = JSON.parse(block.slice(dataAt + 6)) as {
                peer?: { peer_id: string; hosted_app_ulas: string[] };
                peers_version?: number;
              };
              if (f === 0 && event.peers_version !== undefined) streamVersion = event.peers_version;
              const peer = event.peer;
              if (!block.startsWith("event: update") || !peer) continue;
              const at = sentAt.get(`${peer.peer_id} ${peer.hosted_app_ulas.join(",")}`);
              if (at !== undefined) heard.push(performance.now() - at);
            }
          }
        } catch (err) {
          if (!ac.signal.aborted) console.error(`follower ${f} stopped: ${(err as Error).message}`);
        }
      })();
    }

    // Register every peer.
    const peers: { id: string; key: string; beats: number }[] = [];
    const regStart = performance.now();
    await paced(peersWanted, Math.max(1, peersWanted / 100), async (i) => {
      const key = wgKey();
      const res = await fetch(`${url}/v1/mesh/register`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({
          wg_public_key: key,
          wg_listen_port: 51820,
          display_name: `sim-${i}`,
          network: "bench",
          listen_endpoint: `[fd7e::${(i + 1).toString(16)}]:51820`,
        }),
      });
      if (!res.ok) throw new Error(`register ${i}: ${res.status} ${await res.text()}`);
      peers.push({ id: ((await res.json()) as { peer_id: string }).peer_id, key, beats: 0 });
    });
    const regSecs = (performance.now() - regStart) / 1000;

    // Heartbeats at the mesh's rate: every peer once per interval, for the phase.
    const beats = Math.round((peers.length * phaseSecs) / intervalSecs);
    const beatLatency: number[] = [];
    const cpu0 = cpuSecs(pid);
    await paced(beats, phaseSecs, async (i) => {
      const peer = peers[i % peers.length] as (typeof peers)[number];
      peer.beats++;
      const changes = i % CHANGE_EVERY === 0;
      const hosted = changes ? [appUla(i % peers.length, peer.beats)] : undefined;
      const body = {
        peer_id: peer.id,
        wg_public_key: peer.key,
        ...(hosted ? { hosted_app_ulas: hosted } : {}),
        peer_paths: [{ peer_id: (peers[(i + 1) % peers.length] as { id: string }).id, path: "direct" }],
        ...(streamVersion !== undefined ? { peers_version: streamVersion } : {}),
      };
      const t0 = performance.now();
      if (hosted) sentAt.set(`${peer.id} ${hosted.join(",")}`, t0);
      const res = await fetch(`${url}/v1/mesh/heartbeat`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`heartbeat: ${res.status} ${text}`);
      beatLatency.push(performance.now() - t0);
    });
    const cpuBeats = cpuSecs(pid) - cpu0;
    const rss = rssMiB(pid);
    await sleep(1000);

    // The anchor: as many health requests, at the same rate, against the same process.
    const healthLatency: number[] = [];
    const cpu1 = cpuSecs(pid);
    await paced(beats, phaseSecs, async () => {
      const t0 = performance.now();
      const res = await fetch(`${url}/api/healthz`);
      await res.arrayBuffer();
      healthLatency.push(performance.now() - t0);
    });
    const cpuHealth = cpuSecs(pid) - cpu1;
    for (const s of streams) s.abort();

    heard.sort((a, b) => a - b);
    beatLatency.sort((a, b) => a - b);
    healthLatency.sort((a, b) => a - b);
    const perBeatUs = (cpuBeats / beats) * 1e6;
    const perHealthUs = (cpuHealth / beats) * 1e6;
    const fmt = (n: number) => n.toFixed(2);
    const lines = [
      `bench:mesh on ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}: ${peers.length} peers, ${followers} stream followers, heartbeat every ${intervalSecs} s, ${phaseSecs} s phase`,
      `registration: ${peers.length} peers in ${fmt(regSecs)} s (${fmt(peers.length / regSecs)}/s)`,
      `heartbeats: ${beats} (${fmt(beats / phaseSecs)}/s), 1 in ${CHANGE_EVERY} changing app addresses`,
      `  coordinator CPU per heartbeat: ${fmt(perBeatUs)} µs  (anchor /api/healthz: ${fmt(perHealthUs)} µs; ratio ${fmt(perBeatUs / perHealthUs)}×)`,
      `  heartbeat latency p50 ${fmt(percentile(beatLatency, 50))} ms, p99 ${fmt(percentile(beatLatency, 99))} ms  (anchor p50 ${fmt(percentile(healthLatency, 50))} ms, p99 ${fmt(percentile(healthLatency, 99))} ms; p50 ratio ${fmt(percentile(beatLatency, 50) / percentile(healthLatency, 50))}×)`,
      `  coordinator RSS after the phase: ${fmt(rss)} MiB`,
      `stream fan-out: ${heard.length} deliveries (${followers} followers), latency p50 ${fmt(percentile(heard, 50))} ms, p99 ${fmt(percentile(heard, 99))} ms  (ratio to /api/healthz p50: ${fmt(percentile(heard, 50) / percentile(healthLatency, 50))}×)`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await node.stop(5000);
    await data.remove();
  }
}

await main();
