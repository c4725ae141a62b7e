import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { openStore, type Store } from "../store/index.js";
import { AuditLog } from "./audit-log.js";
import { DeployLock } from "./releases-lock.js";
import { artifactContentDigest, ReleaseStore } from "./releases-store.js";

const APP = "0190a0b0-0000-7000-8000-000000000001";
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;
const source = { repo_url: "https://git.example/o/r", commit_sha: "a".repeat(40) };

let store: Store;
let audit: AuditLog;
let clock = Date.parse("2026-01-01T00:00:00Z");
const now = () => {
  clock += 1000;
  return new Date(clock);
};

before(async () => {
  store = await openStore({ engine: "sqlite", file: ":memory:" });
  audit = new AuditLog(store, { now });
});
after(async () => {
  await store.close();
});

describe("releases", () => {
  it("records one immutable release per digest; the same digest again is that release", async () => {
    const releases = new ReleaseStore(store, audit, now);
    const first = await releases.record({
      app: APP,
      digest: digest(1),
      source,
      manifest: { app: APP },
      created_by: "alice",
    });
    assert.equal(first.created, true);
    assert.equal(first.release.manifest.release, first.release.id, "the manifest names its release");
    const again = await releases.record({
      app: APP,
      digest: digest(1),
      source,
      manifest: { other: 1 },
      created_by: "bob",
    });
    assert.equal(again.created, false);
    assert.deepEqual(again.release, first.release);
    await assert.rejects(
      releases.record({ app: APP, digest: "latest", source, manifest: {}, created_by: "x" }),
      (e: unknown) => isTabbifyError(e, "BAD_REQUEST"),
    );
  });

  it("lists newest first with the environment running each, and knows what ran before", async () => {
    const releases = new ReleaseStore(store, audit, now);
    const r2 = (await releases.record({ app: APP, digest: digest(2), source, manifest: {}, created_by: "a" }))
      .release;
    const r3 = (await releases.record({ app: APP, digest: digest(3), source, manifest: {}, created_by: "a" }))
      .release;
    await releases.markRunning(r2, "prod", "system", "release.deploy");
    await releases.markRunning(r3, "test", "system", "release.deploy");
    await releases.markRunning(r3, "prod", "system", "release.promote");
    const list = await releases.list(APP);
    assert.deepEqual(
      list.map((r) => [r.digest, r.environments]),
      [
        [digest(3), ["prod", "test"]],
        [digest(2), []],
        [digest(1), []],
      ],
    );
    const history = await releases.history(APP, "prod");
    assert.equal(history.current?.id, r3.id);
    assert.equal(history.previous?.id, r2.id);
    assert.equal((await releases.find(APP, digest(2))).id, r2.id, "found by digest");
    await assert.rejects(releases.find(APP, "nope"), (e: unknown) => isTabbifyError(e, "RELEASE_NOT_FOUND"));
    const actions = (await audit.page(0, 100)).map((e) => e.action);
    for (const action of ["release.create", "release.deploy", "release.promote"])
      assert.ok(actions.includes(action));
  });
});

describe("artifact content digest", () => {
  it("is the same for the same tree in any order, and differs when anything changes", () => {
    const files = [
      { path: "b.js", digest: digest(11) },
      { path: "a/index.js", digest: digest(12) },
    ];
    const d = artifactContentDigest("[app]\n", files);
    assert.match(d, /^sha256:[0-9a-f]{64}$/);
    assert.equal(artifactContentDigest("[app]\n", [...files].reverse()), d);
    assert.notEqual(artifactContentDigest("[app] \n", files), d);
    assert.notEqual(
      artifactContentDigest("[app]\n", [files[0]!, { path: "a/index.js", digest: digest(13) }]),
      d,
    );
    assert.throws(() => artifactContentDigest("", [files[0]!, files[0]!]), /twice/);
  });
});

describe("deploy lock", () => {
  const noWait = { wait: false };

  it("refuses a second holder naming the first without waiting, frees on release, and expires", async () => {
    let t = Date.parse("2026-02-01T00:00:00Z");
    const lock = new DeployLock(store, { ttlMs: 60_000, now: () => new Date(t) });
    await lock.acquire(APP, "prod", "d-1", "rollback by alice", noWait);
    await assert.rejects(lock.acquire(APP, "prod", "d-2", "deploy d-2", noWait), (e: unknown) => {
      assert.ok(isTabbifyError(e, "DEPLOY_LOCKED"));
      assert.match(e.message, /rollback by alice/);
      assert.equal((e.detail as { deploy_id: string }).deploy_id, "d-1");
      return true;
    });
    await lock.acquire(APP, "test", "d-2", "deploy d-2", noWait);
    await lock.release(APP, "prod", "d-1");
    await lock.acquire(APP, "prod", "d-3", "deploy d-3", noWait);
    t += 61_000;
    await lock.acquire(APP, "prod", "d-4", "deploy d-4", noWait);
    await assert.rejects(lock.acquire(APP, "prod", "d-5", "deploy d-5", noWait), /deploy d-4/);
    await lock.release(APP, "prod", "d-4");
    await lock.release(APP, "test", "d-2");
  });

  it("queues waiters and serves them oldest first, each told whom it waits for", async () => {
    const lock = new DeployLock(store, { pollMs: 5 });
    await lock.acquire(APP, "queue", "q-0", "deploy q-0", noWait);
    const order: string[] = [];
    const told: string[] = [];
    const waiters = [];
    for (const id of ["q-1", "q-2", "q-3"]) {
      waiters.push(
        lock
          .acquire(APP, "queue", id, `deploy ${id}`, {
            wait: true,
            onQueued: async (held) => void told.push(`${id}<${held.holder}`),
          })
          .then(async ({ queued_ms }) => {
            order.push(id);
            assert.ok(queued_ms > 0);
            await sleep(20);
            await lock.release(APP, "queue", id);
          }),
      );
      // Each joins the queue before the next arrives.
      await sleep(15);
    }
    await assert.rejects(lock.acquire(APP, "queue", "q-x", "deploy q-x", noWait), /deploy q-0/);
    await lock.release(APP, "queue", "q-0");
    await Promise.all(waiters);
    assert.deepEqual(order, ["q-1", "q-2", "q-3"]);
    assert.equal(told[0], "q-1<deploy q-0");
    assert.equal(told.length, 3);
  });

  it("frees the locks and queue places of deploys that ended without letting go", async () => {
    const lock = new DeployLock(store);
    const deploy = (id: string, status: string) =>
      store.db
        .insertInto("deploys")
        .values({
          id,
          status,
          created_at: new Date().toISOString(),
          finished_at: null,
          app_uuid: APP,
          image_ref: null,
          digest: null,
          request: "{}",
          results: "[]",
          error: null,
          owner: "test",
        })
        .execute();
    await deploy("dead-1", "failed");
    await deploy("live-1", "running");
    await lock.acquire(APP, "sweep-a", "dead-1", "deploy dead-1", noWait);
    await lock.acquire(APP, "sweep-b", "live-1", "deploy live-1", noWait);
    const freed = await lock.sweep();
    assert.deepEqual(
      freed.map((f) => [f.environment, f.deploy_id]),
      [["sweep-a", "dead-1"]],
    );
    await lock.acquire(APP, "sweep-a", "next", "deploy next", noWait);
    await assert.rejects(lock.acquire(APP, "sweep-b", "next", "deploy next", noWait), /live-1/);
  });
});
