import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../src/node/index.js";
import { call, fetchAudit } from "./support/apps-api.js";
import { sleep, tempDir } from "./support/tools.js";

/** Apps first seen as runners on the roster (a `tcli push` deploy) get a registry entry and a name. */

const KEY = "apps-roster-node-key-0000";

describe("roster sightings", () => {
  let dir: { path: string; remove(): Promise<void> };
  let node: RunningNode;

  before(async () => {
    dir = await tempDir("tabbify-apps-roster");
    node = await startNode({
      port: 0,
      httpLogLevel: "silent",
      nodeKey: KEY,
      dataDir: join(dir.path, "node"),
    });
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("registers an unknown runner's app as system, and /v1/apps and /v1/topology show its name", async () => {
    const uuid = "0191e7c2-1111-7222-8333-444455556666";
    const registered = await call(node.url, "POST", "/v1/mesh/register", {
      token: KEY,
      body: {
        kind: "supervisor",
        name: "laptop",
        address: "http://127.0.0.1:9",
        ula: "fd5a:1f00:0:1::1",
        version: "0.1.0",
        tags: ["supervisor"],
      },
    });
    assert.equal(registered.status, 200, registered.text);
    const runner = await call(node.url, "POST", "/v1/mesh/register", {
      token: KEY,
      body: {
        kind: "runner",
        name: uuid,
        app_uuid: uuid,
        parent: "laptop",
        address: "127.9.9.9:8730",
        ula: "127.9.9.9",
        version: "0.1.0",
        tags: ["runner"],
      },
    });
    assert.equal(runner.status, 200, runner.text);

    const deadline = Date.now() + 15_000;
    let app = await call(node.url, "GET", `/api/v1/apps/${uuid}`, { token: KEY });
    while (app.status === 404 && Date.now() < deadline) {
      await sleep(200);
      app = await call(node.url, "GET", `/api/v1/apps/${uuid}`, { token: KEY });
    }
    assert.equal(app.status, 200, app.text);
    assert.equal(app.body.name, "app-0191e7c21111");
    assert.equal(app.body.tenant, "default");
    const created = (await fetchAudit(node.url, KEY)).find((e) => e.action === "app.create");
    assert.equal(created?.actor, "system");

    const apps = (await call(node.url, "GET", "/v1/apps", { token: KEY })).body.apps as Array<{
      uuid: string;
      name: string;
    }>;
    assert.equal(apps.find((a) => a.uuid === uuid)?.name, "app-0191e7c21111");
    const topology = (await call(node.url, "GET", "/v1/topology", { token: KEY })).body as {
      supervisors: Array<{ runners: Array<{ app_uuid: string; name: string | null }> }>;
    };
    assert.equal(topology.supervisors[0]?.runners[0]?.name, "app-0191e7c21111");
  });
});
