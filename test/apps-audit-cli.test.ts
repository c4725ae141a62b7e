import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { sleep } from "../src/core/sleep.js";
import { call, fetchAudit, firstBrokenSeq } from "./support/apps-api.js";
import { freePort, type RunningProcess, spawnTabbify, tempDir, waitForHttp } from "./support/tools.js";

/**
 * The registry through the real binary: `--seed-apps` once across restarts, kill -9 in the middle
 * of a burst of mutations, and `tabbify audit verify` on an intact and on a tampered store.
 */

const KEY = "apps-audit-cli-node-key-42";
const env = { TABBIFY_NODE_KEY: KEY };

async function verify(args: string[]): Promise<{ code: number | string; out: string }> {
  const proc = spawnTabbify(["audit", "verify", ...args], env);
  const code = await proc.exited;
  return { code, out: proc.output() };
}

describe("tabbify node registry + tabbify audit verify", () => {
  let dir: { path: string; remove(): Promise<void> };
  let dataDir: string;
  let seedFile: string;
  let node: RunningProcess | undefined;
  let url = "";

  async function startNodeProcess(): Promise<void> {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    node = spawnTabbify(
      [
        "node",
        "--listen",
        `127.0.0.1:${port}`,
        "--data",
        dataDir,
        "--seed-apps",
        seedFile,
        "--allowed-servers",
        "edge-1,edge-2",
      ],
      env,
    );
    await waitForHttp(`${url}/health`);
  }

  before(async () => {
    dir = await tempDir("tabbify-apps-cli");
    dataDir = join(dir.path, "node");
    seedFile = join(dir.path, "seed.toml");
    await writeFile(
      seedFile,
      '[[apps]]\nname = "alpha"\ntenant = "acme"\nservers = ["edge-1"]\n\n[[apps]]\nname = "beta"\ntenant = "acme"\nbranch = "release"\n',
    );
  });
  after(async () => {
    await node?.stop();
    await dir?.remove();
  });

  it("seeds once on first boot and never again, even from a changed file", async () => {
    await startNodeProcess();
    const first = await call(url, "GET", "/api/v1/apps", { token: KEY });
    assert.deepEqual(
      (first.body.apps as Array<{ name: string }>).map((a) => a.name),
      ["alpha", "beta"],
    );
    await node?.stop();
    await writeFile(seedFile, '[[apps]]\nname = "gamma"\ntenant = "acme"\n');
    await startNodeProcess();
    const second = await call(url, "GET", "/api/v1/apps", { token: KEY });
    assert.deepEqual(
      (second.body.apps as Array<{ name: string }>).map((a) => a.name),
      ["alpha", "beta"],
    );
    // Even an emptied registry is not re-seeded: the seed ran once.
    await call(url, "DELETE", "/api/v1/apps/alpha", { token: KEY });
    await call(url, "DELETE", "/api/v1/apps/beta", { token: KEY });
    await node?.stop();
    await startNodeProcess();
    const third = await call(url, "GET", "/api/v1/apps", { token: KEY });
    assert.deepEqual(third.body.apps, []);
  });

  it("loses no acknowledged mutation and keeps the chain intact across kill -9", async () => {
    const acknowledged: string[] = [];
    let stop = false;
    let n = 0;
    const worker = async () => {
      while (!stop) {
        const name = `burst-${n++}`;
        try {
          const res = await call(url, "PUT", `/api/v1/apps/${name}`, {
            token: KEY,
            body: { tenant: "acme", labels: { n: name }, servers: ["edge-2"] },
          });
          if (res.status === 201) acknowledged.push(name);
        } catch {
          return; // the node is gone
        }
      }
    };
    const workers = Array.from({ length: 6 }, () => worker());
    while (acknowledged.length < 60) await sleep(10);
    node?.child.kill("SIGKILL");
    await node?.exited;
    stop = true;
    await Promise.all(workers);

    await startNodeProcess();
    const apps = await call(url, "GET", "/api/v1/apps", { token: KEY });
    const names = new Set((apps.body.apps as Array<{ name: string }>).map((a) => a.name));
    for (const name of acknowledged) assert.ok(names.has(name), `${name} was acknowledged, so it survives`);
    const events = await fetchAudit(url, KEY, 50);
    assert.equal(firstBrokenSeq(events), undefined);
    const created = new Set(events.filter((e) => e.action === "app.create").map((e) => e.subject));
    for (const name of names)
      assert.ok(created.has(`app:${name}`), `${name} exists, so its creation is audited`);
    for (const name of acknowledged) assert.ok(created.has(`app:${name}`));
  });

  it("verifies an intact chain from the data dir and from the node's API", async () => {
    const viaApi = await verify(["--node", url]);
    assert.equal(viaApi.code, 0, viaApi.out);
    assert.match(viaApi.out, /^audit chain intact: \d+ events, head seq \d+ [0-9a-f]{64}$/m);
    const viaFile = await verify(["--data", dataDir]);
    assert.equal(viaFile.code, 0, viaFile.out);
    assert.equal(viaFile.out, viaApi.out);
  });

  it("names the first broken seq once a row is edited behind the node's back", async () => {
    await node?.stop();
    node = undefined;
    const db = new Database(join(dataDir, "node.db"));
    try {
      db.prepare("update audit_events set after = replace(after, 'acme', 'evil') where seq = 7").run();
      db.prepare("update audit_events set actor = 'mallory' where seq = 12").run();
    } finally {
      db.close();
    }
    const result = await verify(["--data", dataDir]);
    assert.equal(result.code, 1, result.out);
    assert.match(result.out, /^audit chain broken at seq 7: event_hash does not match/m);
  });

  it("refuses a missing store and a missing source", async () => {
    const missing = await verify(["--data", join(dir.path, "nowhere")]);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /no node store at/);
    const none = await verify([]);
    assert.equal(none.code, 1);
    assert.match(none.out, /exactly one of --data, --database, --node/);
  });
});
