/**
 * kill -9 of a real node process during a burst of deploy and webhook writes, on both engines:
 * after a restart every write the node acknowledged is there, and nothing is half-written (every
 * deploy is closed, its events run 1..n without a gap and end with the closing event; every
 * acknowledged delivery has its claim and its note).
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { sql } from "kysely";
import { openStore, type Store } from "../src/store/index.js";
import { type PostgresServer, startPostgres } from "./support/postgres.js";
import { freePort, type RunningProcess, spawnTabbify, tempDir, waitForHttp } from "./support/tools.js";

const NODE_KEY = "kill-test-node-key-0123456789";
const WEBHOOK_SECRET = "kill-test-webhook-secret";

interface NodeUnderTest {
  url: string;
  proc: RunningProcess;
}

async function startNodeProcess(dataDir: string, databaseUrl: string | undefined): Promise<NodeUnderTest> {
  const port = await freePort();
  const proc = spawnTabbify(
    // GitHub's API on a closed port: each deploy fails fast at fetch_manifest, after a few events.
    // --allow-private-repos: there is no DNS here, and github.com must pass the repo_url check.
    [
      "node",
      "--listen",
      `127.0.0.1:${port}`,
      "--data",
      dataDir,
      "--github-api-url",
      "http://127.0.0.1:9",
      "--allow-private-repos",
    ],
    {
      TABBIFY_NODE_KEY: NODE_KEY,
      GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ...(databaseUrl ? { TABBIFY_DATABASE_URL: databaseUrl } : {}),
    },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/health`, 30_000);
  } catch (err) {
    await proc.stop();
    throw new Error(`${(err as Error).message}\n${proc.output().slice(-2000)}`);
  }
  return { url, proc };
}

const auth = { authorization: `Bearer ${NODE_KEY}` };

async function postDeploy(url: string, i: number): Promise<string | undefined> {
  const res = await fetch(`${url}/v1/deploy`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ repo_url: `https://github.com/kill/app-${i}`, ref: "main", tenant: "kill" }),
  });
  const body = (await res.json()) as { id?: string };
  return res.status === 202 ? body.id : undefined;
}

async function postDelivery(url: string, id: string): Promise<boolean> {
  // An `issues` event: claimed and noted as ignored, two writes, acknowledged with 200.
  const raw = JSON.stringify({ action: "opened", repository: { full_name: "kill/app" }, delivery: id });
  const res = await fetch(`${url}/v1/webhooks/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "issues",
      "x-github-delivery": id,
      "x-hub-signature-256": `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(raw).digest("hex")}`,
    },
    body: raw,
  });
  const body = (await res.json()) as { status?: string };
  return res.status === 200 && body.status === "ignored";
}

/** Writes from several clients at once until the node dies; returns what it acknowledged. */
async function burstUntilKilled(node: NodeUnderTest, killAfterAcks: number) {
  const deploys: string[] = [];
  const deliveries: string[] = [];
  let stopped = false;
  let acks = 0;
  const killed = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (acks >= killAfterAcks) {
        clearInterval(check);
        node.proc.child.kill("SIGKILL");
        stopped = true;
        resolve();
      }
    }, 5);
  });
  const worker = async (w: number) => {
    for (let i = 0; !stopped; i++) {
      try {
        if (i % 2 === 0) {
          const id = await postDeploy(node.url, w * 100_000 + i);
          if (id !== undefined) {
            deploys.push(id);
            acks++;
          }
        } else {
          const id = `kill-${w}-${i}`;
          if (await postDelivery(node.url, id)) {
            deliveries.push(id);
            acks++;
          }
        }
      } catch {
        // The node died under this request: it was never acknowledged.
      }
    }
  };
  await Promise.all([killed, ...Array.from({ length: 8 }, (_, w) => worker(w))]);
  await node.proc.exited;
  return { deploys, deliveries };
}

async function checkNothingHalfWritten(store: Store): Promise<void> {
  const deploys = await store.db.selectFrom("deploys").select(["id", "status"]).execute();
  for (const d of deploys) {
    assert.notEqual(d.status, "running", `deploy ${d.id} was closed at restart`);
    const events = await store.db
      .selectFrom("deploy_events")
      .select(["seq", "type"])
      .where("deploy_id", "=", d.id)
      .orderBy("seq")
      .execute();
    assert.deepEqual(
      events.map((e) => Number(e.seq)),
      events.map((_, i) => i + 1),
      `deploy ${d.id}: events 1..n without a gap`,
    );
    const closing = events.filter((e) => e.type === "deploy_failed" || e.type === "deploy_finished");
    assert.equal(closing.length, 1, `deploy ${d.id} has exactly one closing event`);
    assert.equal(events.at(-1)?.type, closing[0]?.type, `deploy ${d.id} ends with its closing event`);
  }
}

for (const engine of ["sqlite", "postgres"] as const) {
  describe(`kill -9 during a burst of writes (${engine})`, () => {
    let pg: PostgresServer | undefined;
    before(async () => {
      if (engine === "postgres") pg = await startPostgres();
    });
    after(() => pg?.stop());

    it("restarts with every acknowledged write and nothing half-written", async () => {
      const dir = await tempDir("tabbify-kill");
      const dataDir = join(dir.path, "node");
      const databaseUrl = pg ? await pg.createDatabase() : undefined;
      try {
        for (let round = 1; round <= 2; round++) {
          const node = await startNodeProcess(dataDir, databaseUrl);
          const acked = await burstUntilKilled(node, 60);
          assert.ok(
            acked.deploys.length > 0 && acked.deliveries.length > 0,
            "both kinds of write were acknowledged",
          );

          const restarted = await startNodeProcess(dataDir, databaseUrl);
          try {
            for (const id of acked.deploys) {
              const res = await fetch(`${restarted.url}/v1/deploy/${id}/status`, { headers: auth });
              const body = (await res.json()) as { state?: string; done?: boolean };
              assert.equal(res.status, 200, `round ${round}: acknowledged deploy ${id} is there and closed`);
              assert.equal(body.done, true);
            }
            for (const id of acked.deliveries) {
              assert.equal(
                await postDelivery(restarted.url, id),
                false,
                `round ${round}: acknowledged delivery ${id} is recognised as a redelivery`,
              );
            }
          } finally {
            await restarted.proc.stop();
          }

          const store = databaseUrl
            ? await openStore({ engine: "postgres", url: databaseUrl })
            : await openStore({ engine: "sqlite", file: join(dataDir, "node.db") });
          try {
            await checkNothingHalfWritten(store);
            const notes = await store.db
              .selectFrom("webhook_deliveries")
              .select(["delivery_id", "claimed_at", "note"])
              .where("delivery_id", "in", acked.deliveries)
              .execute();
            assert.equal(notes.length, acked.deliveries.length, "every acknowledged delivery is stored");
            for (const row of notes) {
              assert.ok(row.claimed_at, `${row.delivery_id} is claimed`);
              assert.equal(
                JSON.parse(row.note ?? "{}").outcome,
                "ignored",
                `${row.delivery_id} has its note`,
              );
            }
            if (engine === "sqlite") {
              const check = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(store.db);
              assert.equal(check.rows[0]?.integrity_check, "ok");
            }
          } finally {
            await store.close();
          }
        }
      } finally {
        await dir.remove();
      }
    });
  });
}
