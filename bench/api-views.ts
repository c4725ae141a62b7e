/**
 * `node dist/bench/api-views.js`: requests per second of the node's roster views `GET /v1/apps`
 * and `GET /v1/topology` with 100 apps on the roster (10 supervisors × 10 runners), 8 requests in
 * flight over keep-alive, against a node started in this process. What it measures is the
 * handler plus the response's serialization (a declared response schema serializes with
 * fast-json-stringify; without one fastify falls back to JSON.stringify).
 * `BENCH_API_REQUESTS` sets requests per view (default 4000).
 *
 * Then the serialization alone, which HTTP figures on a loaded host drown: each view's answer
 * (as the node gave it) turned into text by its route's response schema (fast-json-stringify, as
 * fastify does) and by JSON.stringify (what a route without a response schema gets), median of 7
 * rounds of `BENCH_API_SERIALIZE` answers (default 2000).
 */
import { deepStrictEqual } from "node:assert/strict";
import { Agent, request } from "node:http";
import { cpus, loadavg } from "node:os";
import { isDeepStrictEqual } from "node:util";
import fastJson from "fast-json-stringify";
import { v4 as uuidv4 } from "uuid";
import { rosterAppsSchema, topologySchema } from "../src/node/schemas/roster.js";
import { startNode } from "../src/node/server.js";

const REQUESTS = Number(process.env.BENCH_API_REQUESTS ?? "4000");
const IN_FLIGHT = 8;
const KEY = "bench-node-key-0123456789abcdef";

const node = await startNode({ port: 0, nodeKey: KEY, httpLogLevel: "silent", peerTimeoutMs: 3_600_000 });
const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });

function call(method: string, path: string, body?: unknown): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${node.url}${path}`,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${KEY}`,
          ...(text ? { "content-type": "application/json" } : {}),
        },
      },
      (res) => {
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

for (let s = 0; s < 10; s++) {
  const name = `sup-${s}`;
  await call("POST", "/v1/mesh/register", {
    kind: "supervisor",
    name,
    address: `http://127.0.0.1:${9000 + s}`,
    ula: `fd00::${s + 1}`,
    version: "0.1.0",
    tags: ["supervisor", "docker"],
  });
  for (let r = 0; r < 10; r++) {
    await call("POST", "/v1/mesh/register", {
      kind: "runner",
      app_uuid: uuidv4(),
      parent: name,
      address: `http://127.0.0.1:${10000 + s * 10 + r}`,
      ula: `fd00::1:${s * 10 + r + 1}`,
      version: "0.1.0",
    });
  }
}

async function measure(path: string): Promise<{ rps: number; bytes: number }> {
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    while (next < REQUESTS) {
      next++;
      const res = await call("GET", path);
      if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
      bytes = res.bytes;
    }
  };
  // Warm up the JIT and the sockets before the timed run.
  for (let i = 0; i < 200; i++) await call("GET", path);
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { rps: Math.round((REQUESTS / (performance.now() - started)) * 1000), bytes };
}

console.log(`cores ${cpus().length}, load ${loadavg()[0]?.toFixed(2)}, ${REQUESTS} requests per view`);
for (const path of ["/v1/apps", "/v1/topology", "/v1/apps", "/v1/topology"]) {
  const { rps, bytes } = await measure(path);
  console.log(`${path.padEnd(14)} ${String(rps).padStart(6)} req/s  (${bytes} bytes per answer)`);
}

/** A copy of `schema` with every object closed to the properties it lists. */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) out[k] = closed(v);
  if (out.type === "object" && out.properties) out.additionalProperties = false;
  return out;
}

const SERIALIZE = Number(process.env.BENCH_API_SERIALIZE ?? "2000");

/** Microseconds per answer, median of 7 rounds. */
function perAnswer(serialize: (value: unknown) => string, value: unknown): number {
  const rounds: number[] = [];
  for (let round = 0; round < 7; round++) {
    const started = performance.now();
    for (let i = 0; i < SERIALIZE; i++) serialize(value);
    rounds.push(((performance.now() - started) * 1000) / SERIALIZE);
  }
  return rounds.sort((a, b) => a - b)[3]!;
}

for (const [path, schema] of [
  ["/v1/apps", rosterAppsSchema.response[200]],
  ["/v1/topology", topologySchema.response[200]],
] as const) {
  const res = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${KEY}` } });
  const value: unknown = await res.json();
  const bySchema = fastJson(schema as Parameters<typeof fastJson>[0]);
  // Both must say the same thing, or the comparison is of different work.
  deepStrictEqual(
    JSON.parse(bySchema(value)),
    value,
    `${path}: the schema's serializer drops or changes fields`,
  );
  const schemaUs = perAnswer(bySchema as (v: unknown) => string, value);
  const plainUs = perAnswer(JSON.stringify, value);
  // What closing the schema (every object `additionalProperties: false`) would give: it drops any
  // field the schema does not list, so it counts only when it still says the same thing.
  const byClosed = fastJson(closed(schema) as Parameters<typeof fastJson>[0]);
  const closedSame = isDeepStrictEqual(JSON.parse(byClosed(value)), value);
  const closedUs = perAnswer(byClosed as (v: unknown) => string, value);
  console.log(
    `${path.padEnd(14)} serialize: schema ${schemaUs.toFixed(1)} µs, JSON.stringify ${plainUs.toFixed(1)} µs per answer (${(plainUs / schemaUs).toFixed(2)}× faster); closed schema ${closedUs.toFixed(1)} µs (${(plainUs / closedUs).toFixed(2)}×${closedSame ? "" : ", DROPS FIELDS"})`,
  );
}
agent.destroy();
await node.close();
