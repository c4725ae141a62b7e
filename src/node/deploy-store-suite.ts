import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { silentLogger } from "../core/log.js";
import { type DeployEvent, type DeployRecord, followDeploy } from "../pipeline/executor.js";
import { DeliveryLedger } from "../pipeline/webhooks.js";
import type { Store } from "../store/index.js";
import { type DeliveryNote, SqlDeliveryLog, SqlDeployStore } from "./deploy-store.js";
import { importKey } from "./jsonl-import.js";
import { nodeOwner, openNodeStore } from "./node-store.js";

/**
 * The node's deploy and delivery stores against one engine: `databaseUrl` undefined runs them on
 * SQLite under a fresh data dir, a URL (a fresh Postgres database per call) on Postgres.
 */
export function deployStoreSuite(engine: string, freshDatabaseUrl: () => Promise<string | undefined>): void {
  const root = mkdtempSync(join(tmpdir(), "tabbify-deploy-store-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  const fresh = async () => {
    const dataDir = join(root, `node${++n}`);
    const databaseUrl = await freshDatabaseUrl();
    const open = () =>
      openNodeStore({ dataDir, ...(databaseUrl ? { databaseUrl } : {}), logger: silentLogger });
    return { dataDir, open };
  };

  const withStores = async (
    fn: (ctx: { store: Store; deploys: SqlDeployStore; dataDir: string }) => Promise<void>,
  ) => {
    const { dataDir, open } = await fresh();
    const store = await open();
    try {
      await fn({ store, deploys: await SqlDeployStore.open(store, { owner: nodeOwner(dataDir) }), dataDir });
    } finally {
      await store.close();
    }
  };

  const record = (id: string, created_at: string): DeployRecord => ({
    id,
    status: "running",
    request: { trigger: "api", repoUrl: "https://example.com/o/r", ref: "main", tenant: "o" },
    created_at,
    results: [],
    events: [],
  });

  const event = (deploy_id: string, seq: number, type: DeployEvent["type"] = "log"): DeployEvent => ({
    seq,
    ts: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
    deploy_id,
    step: type === "log" ? "build_and_push" : "deploy",
    type,
    message: `line ${seq}`,
    data: { n: seq, nested: { ok: true } },
  });

  test(`${engine}: a deploy record round-trips: create, events, patches`, async () => {
    await withStores(async ({ deploys }) => {
      await deploys.create(record("d1", "2026-01-01T00:00:00.000Z"));
      await deploys.append(event("d1", 1));
      await deploys.append({
        seq: 2,
        ts: "2026-01-01T00:00:02.000Z",
        deploy_id: "d1",
        step: "build_and_push",
        type: "log",
      });
      await deploys.update("d1", { app_uuid: "0191e7c2-1111-7222-8333-444455556666", image_ref: "r/x:1" });
      const closing = {
        status: "failed" as const,
        finished_at: "2026-01-01T00:01:00.000Z",
        results: [],
        error: { code: "X", message: "m", step: "build_and_push" as const },
      };
      // An event that cannot be written (its seq is taken) takes its patch down with it.
      await assert.rejects(deploys.append(event("d1", 2, "deploy_failed"), closing));
      assert.equal((await deploys.get("d1"))?.status, "running", "the patch rolled back with the event");
      await deploys.append(event("d1", 3, "deploy_failed"), closing);
      const got = await deploys.get("d1");
      assert.deepEqual(got, {
        ...record("d1", "2026-01-01T00:00:00.000Z"),
        status: "failed",
        finished_at: "2026-01-01T00:01:00.000Z",
        app_uuid: "0191e7c2-1111-7222-8333-444455556666",
        image_ref: "r/x:1",
        error: { code: "X", message: "m", step: "build_and_push" },
        events: [
          event("d1", 1),
          { seq: 2, ts: "2026-01-01T00:00:02.000Z", deploy_id: "d1", step: "build_and_push", type: "log" },
          event("d1", 3, "deploy_failed"),
        ],
      });
      assert.equal(await deploys.get("nope"), undefined);
      await assert.rejects(deploys.append(event("nope", 1)), { code: "DEPLOY_NOT_FOUND" });
      await assert.rejects(deploys.update("nope", { status: "failed" }), { code: "DEPLOY_NOT_FOUND" });
      await assert.rejects(
        deploys.subscribe("nope", 0, () => {}),
        { code: "DEPLOY_NOT_FOUND" },
      );
      await assert.rejects(deploys.create(record("d1", "2026-01-01T00:00:00.000Z")), "ids are unique");
    });
  });

  test(`${engine}: list() is newest first`, async () => {
    await withStores(async ({ deploys }) => {
      for (const [id, at] of [
        ["a", "2026-01-01T00:00:01.000Z"],
        ["c", "2026-01-01T00:00:03.000Z"],
        ["b", "2026-01-01T00:00:02.000Z"],
      ] as const)
        await deploys.create(record(id, at));
      assert.deepEqual(
        (await deploys.list()).map((r) => r.id),
        ["c", "b", "a"],
      );
      assert.deepEqual(
        (await deploys.list(1)).map((r) => r.id),
        ["c"],
      );
    });
  });

  test(`${engine}: subscribe replays then follows, with no gap and no repeat while events keep coming`, async () => {
    await withStores(async ({ deploys }) => {
      await deploys.create(record("d1", "2026-01-01T00:00:00.000Z"));
      for (let seq = 1; seq <= 5; seq++) await deploys.append(event("d1", seq));
      // The writer keeps appending while the reader subscribes after seq 2.
      const writer = (async () => {
        for (let seq = 6; seq <= 60; seq++) await deploys.append(event("d1", seq));
        await deploys.append(event("d1", 61, "deploy_finished"));
      })();
      const seen: number[] = [];
      for await (const e of followDeploy(deploys, "d1", 2)) seen.push(e.seq);
      await writer;
      assert.deepEqual(
        seen,
        Array.from({ length: 59 }, (_, i) => i + 3),
      );
      // A finished deploy replays to its end and stops.
      const again: number[] = [];
      for await (const e of followDeploy(deploys, "d1", 58)) again.push(e.seq);
      assert.deepEqual(again, [59, 60, 61]);
    });
  });

  test(`${engine}: reopening closes this node's interrupted deploys (record and closing event together), not other nodes'`, async () => {
    const { dataDir, open } = await fresh();
    let store = await open();
    let deploys = await SqlDeployStore.open(store, { owner: nodeOwner(dataDir) });
    await deploys.create(record("mine", "2026-01-01T00:00:00.000Z"));
    await deploys.append(event("mine", 1));
    await deploys.append(event("mine", 2));
    const other = await SqlDeployStore.open(store, { owner: "other-host:/data" });
    await other.create(record("theirs", "2026-01-01T00:00:00.000Z"));
    await store.close();

    store = await open();
    try {
      deploys = await SqlDeployStore.open(store, { owner: nodeOwner(dataDir) });
      const mine = await deploys.get("mine");
      assert.equal(mine?.status, "failed");
      assert.equal(mine?.error?.code, "NODE_RESTARTED");
      assert.ok(mine?.finished_at);
      assert.deepEqual(
        mine?.events.map((e) => [e.seq, e.type]),
        [
          [1, "log"],
          [2, "log"],
          [3, "deploy_failed"],
        ],
      );
      assert.equal((await deploys.get("theirs"))?.status, "running", "another node's deploy is its own");
    } finally {
      await store.close();
    }
  });

  test(`${engine}: finished deploys beyond capacity are deleted at open, oldest first, with their events`, async () => {
    await withStores(async ({ store, deploys, dataDir }) => {
      for (let i = 1; i <= 5; i++) {
        const id = `d${i}`;
        await deploys.create(record(id, `2026-01-01T00:00:0${i}.000Z`));
        await deploys.append(event(id, 1));
        if (i !== 1) await deploys.update(id, { status: "succeeded" });
      }
      // Opened as another node, so d1 stays running (a node closes only its own).
      const trimmed = await SqlDeployStore.open(store, { owner: `other:${dataDir}`, capacity: 2 });
      assert.deepEqual(
        (await trimmed.list()).map((r) => r.id),
        ["d5", "d4", "d1"],
        "the newest two, and the running one",
      );
      const events = await store.db.selectFrom("deploy_events").select("deploy_id").execute();
      assert.deepEqual(events.map((e) => e.deploy_id).sort(), ["d1", "d4", "d5"]);
    });
  });

  test(`${engine}: webhook deliveries: claims survive a reopen in order, notes are kept, the oldest trimmed`, async () => {
    const { open } = await fresh();
    let store = await open();
    let tick = 0;
    const now = () => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ++tick));
    const log = await SqlDeliveryLog.open(store, { now });
    const ledger = await DeliveryLedger.open({ store: log });
    for (const id of ["g1", "g2", "g3", "g4"]) assert.equal(await ledger.claim(id), true);
    assert.equal(await ledger.claim("g2"), false);
    const note: DeliveryNote = {
      delivery_id: "g3",
      source: "github",
      received_at: "2026-01-01T00:00:00.000Z",
      outcome: "deployed",
      deploy_id: "d1",
      repository: "o/r",
      ref: "refs/heads/main",
    };
    await log.note({ ...note, delivery_id: "g2", outcome: "ignored", reason: "tag" });
    await log.note(note);
    assert.deepEqual(await log.noteOf("g3"), note);
    assert.equal(await log.noteOf("g1"), undefined);
    assert.deepEqual(
      (await log.recent()).map((d) => d.delivery_id),
      ["g3", "g2"],
    );
    await store.close();

    store = await open();
    try {
      const reopened = await SqlDeliveryLog.open(store, { capacity: 3, now });
      assert.deepEqual(await reopened.load(), ["g2", "g3", "g4"], "the oldest claim is trimmed");
      const ledger2 = await DeliveryLedger.open({ store: reopened });
      assert.equal(await ledger2.claim("g3"), false, "a redelivery after restart is recognised");
      assert.deepEqual(await reopened.noteOf("g3"), note);
    } finally {
      await store.close();
    }
  });

  test(`${engine}: a data dir in the JSON-lines format is imported once and its files left as they were`, async () => {
    const { dataDir, open } = await fresh();
    const deploysDir = join(dataDir, "deploys");
    mkdirSync(deploysDir, { recursive: true });
    const head = record("0190aaaa-0000-7000-8000-000000000001", "2026-01-01T00:00:00.000Z");
    const { events: _none, ...headOnly } = head;
    const lines = [
      { kind: "record", record: headOnly },
      { kind: "event", event: event(head.id, 1) },
      { kind: "update", patch: { app_uuid: "0191e7c2-1111-7222-8333-444455556666" } },
      { kind: "event", event: event(head.id, 2, "deploy_finished") },
      { kind: "update", patch: { status: "succeeded", finished_at: "2026-01-01T00:00:09.000Z" } },
    ];
    // The last line was torn by a crash: it and nothing after it count.
    writeFileSync(
      join(deploysDir, `${head.id}.jsonl`),
      `${lines.map((l) => JSON.stringify(l)).join("\n")}\n{"kind":"event","ev`,
    );
    const running = record("0190aaaa-0000-7000-8000-000000000002", "2026-01-01T00:00:05.000Z");
    const { events: _none2, ...runningHead } = running;
    writeFileSync(
      join(deploysDir, `${running.id}.jsonl`),
      `${JSON.stringify({ kind: "record", record: runningHead })}\n${JSON.stringify({ kind: "event", event: event(running.id, 1) })}\n`,
    );
    const note: DeliveryNote = {
      delivery_id: "gh-2",
      source: "github",
      received_at: "2026-01-01T00:00:00.000Z",
      outcome: "deployed",
      deploy_id: head.id,
    };
    writeFileSync(
      join(dataDir, "deliveries.jsonl"),
      [{ claimed: "gh-1" }, { claimed: "gh-2" }, { note }].map((l) => `${JSON.stringify(l)}\n`).join(""),
    );
    const before = snapshot(dataDir);

    let store = await open();
    try {
      const deploys = await SqlDeployStore.open(store, { owner: nodeOwner(dataDir) });
      assert.deepEqual(await deploys.get(head.id), {
        ...head,
        status: "succeeded",
        finished_at: "2026-01-01T00:00:09.000Z",
        app_uuid: "0191e7c2-1111-7222-8333-444455556666",
        events: [event(head.id, 1), event(head.id, 2, "deploy_finished")],
      });
      const interrupted = await deploys.get(running.id);
      assert.equal(interrupted?.status, "failed", "a deploy running in the old files is closed");
      assert.equal(interrupted?.events.at(-1)?.type, "deploy_failed");
      const log = await SqlDeliveryLog.open(store);
      assert.deepEqual(await log.load(), ["gh-1", "gh-2"]);
      assert.deepEqual(await log.noteOf("gh-2"), note);
      const marker = await store.db
        .selectFrom("store_meta")
        .selectAll()
        .where("key", "=", importKey(dataDir))
        .executeTakeFirstOrThrow();
      assert.deepEqual(
        { ...JSON.parse(marker.value), imported_at: undefined },
        { imported_at: undefined, deploys: 2, events: 3, deliveries: 2 },
      );
    } finally {
      await store.close();
    }
    assert.deepEqual(snapshot(dataDir), before, "the old files are left as they were");

    // A file that changes afterwards is not imported again: the import happened once.
    writeFileSync(join(dataDir, "deliveries.jsonl"), `${JSON.stringify({ claimed: "gh-late" })}\n`);
    store = await open();
    try {
      const log = await SqlDeliveryLog.open(store);
      assert.deepEqual(await log.load(), ["gh-1", "gh-2"]);
      const count = await store.db.selectFrom("deploys").select("id").execute();
      assert.equal(count.length, 2);
    } finally {
      await store.close();
    }
  });
}

/** Every file under `dir` except the store's own, with its bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (name.startsWith("node.db")) continue;
      if (statSync(path).isDirectory()) walk(path);
      else out[path] = readFileSync(path, "base64");
    }
  };
  walk(dir);
  return out;
}
