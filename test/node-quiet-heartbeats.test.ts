/**
 * An idle node logs nothing at info: peers register and heartbeat every few seconds, and those
 * requests stay out of its log (other requests are still logged, which proves the log flows).
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { freePort, spawnTabbify, tempDir } from "./support/tools.js";

const KEY = "quiet-heartbeats-node-key-0123456789";
let data: { path: string; remove(): Promise<void> };
let node: ReturnType<typeof spawnTabbify>;
let url: string;

before(async () => {
  data = await tempDir("node-quiet-heartbeats");
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  node = spawnTabbify(["node", "--listen", `127.0.0.1:${port}`, "--data", data.path], {
    TABBIFY_NODE_KEY: KEY,
  });
  await node.waitForLine(/listening/, 120_000);
});
after(async () => {
  await node?.stop(15_000);
  await data?.remove();
});

it("keeps roster registrations and heartbeats out of the info log", async () => {
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const peer = {
    kind: "supervisor",
    name: "quiet-sup",
    address: "http://127.0.0.1:9",
    ula: "127.0.0.1",
    version: "0",
    tags: ["supervisor"],
  };
  const registered = await post("/v1/mesh/register", peer);
  assert.ok(registered.status < 300, await registered.text());
  for (let i = 0; i < 3; i++) {
    const beat = await post("/v1/mesh/heartbeat", peer);
    assert.ok(beat.status < 300, await beat.text());
  }
  const topology = await fetch(`${url}/v1/topology`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(topology.status, 200);
  await node.waitForLine(/\/v1\/topology/, 30_000);
  assert.doesNotMatch(node.output(), /\/v1\/mesh\/(register|heartbeat)/);
});
