import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
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
  it("refuses a second holder naming the first, frees on release, and expires", async () => {
    let t = Date.parse("2026-02-01T00:00:00Z");
    const lock = new DeployLock(store, { ttlMs: 60_000, now: () => new Date(t) });
    await lock.acquire(APP, "prod", "deploy-1");
    await assert.rejects(lock.acquire(APP, "prod", "deploy-2"), (e: unknown) => {
      assert.ok(isTabbifyError(e, "DEPLOY_LOCKED"));
      assert.match(e.message, /deploy-1/);
      return true;
    });
    await lock.acquire(APP, "test", "deploy-2");
    await lock.release(APP, "prod", "deploy-1");
    await lock.acquire(APP, "prod", "deploy-3");
    t += 61_000;
    await lock.acquire(APP, "prod", "deploy-4");
    await assert.rejects(
      lock.with(APP, "prod", "deploy-5", async () => {}),
      /deploy-4/,
    );
  });
});
