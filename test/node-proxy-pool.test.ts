import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { startNode } from "../src/node/index.js";
import { getText, listenAsApp, registerLocalRunner } from "./support/local-apps.js";

/**
 * The node's pool of kept-alive connections to apps, at the moments it can fail a client: when
 * the node closes (the old node of an upgrade, or `tabbify up` stopping), and when an app closes
 * its idle connections all at once (a runner handing its app to a new runner).
 */
describe("the node's app connection pool", () => {
  const appUuid = crypto.randomUUID();
  let app: http.Server;
  /** Requests seen per connection; `/reuse-fails` drops a connection on its second request. */
  const seen = new WeakMap<object, number>();

  before(async () => {
    app = http.createServer((req, res) => {
      const n = (seen.get(req.socket) ?? 0) + 1;
      seen.set(req.socket, n);
      if (req.url === "/late") {
        setTimeout(() => res.end("late answer"), 600);
        return;
      }
      if (req.url === "/reuse-fails" && n > 1) {
        // As if the app closed this idle connection just as the node reused it.
        req.socket.destroy();
        return;
      }
      setTimeout(() => res.end(`request ${n} on its connection`), 100);
    });
    await listenAsApp(app, appUuid);
  });

  /** A node with the app's runner on its roster, so a failure reads as the app's (502). */
  const nodeWithApp = async () => {
    const node = await startNode({ host: "127.0.0.1", port: 0, nodeKey: "test-key", httpLogLevel: "silent" });
    registerLocalRunner(node.coordinator, appUuid);
    return node;
  };

  after(async () => {
    app.closeAllConnections();
    await new Promise<void>((r) => app.close(() => r()));
  });

  it("a closing node lets a slow answer started before close() reach its client", async () => {
    const node = await nodeWithApp();
    const answers = Promise.all([0, 1, 2].map(() => getText(`${node.url}/app/${appUuid}/late`)));
    await sleep(200);
    const closed = node.close();
    for (const answer of await answers) assert.deepEqual(answer, { status: 200, body: "late answer" });
    await closed;
  });

  it("a request the app drops on a reused connection goes again on a fresh one, not on another pooled one", async () => {
    const node = await nodeWithApp();
    try {
      // Three requests at once leave three connections in the pool.
      const first = await Promise.all([0, 1, 2].map(() => getText(`${node.url}/app/${appUuid}/reuse-fails`)));
      assert.deepEqual(
        first.map((a) => a.status),
        [200, 200, 200],
      );
      // The next reuses one, which the app drops; the retry must not take another from the pool.
      const again = await getText(`${node.url}/app/${appUuid}/reuse-fails`);
      assert.deepEqual(again, { status: 200, body: "request 1 on its connection" });
    } finally {
      await node.close();
    }
  });
});
