/**
 * Attacks on stateful apps' data: a body naming a host directory or escaping with `..`, an app
 * reading another app's data, and a symlink planted where an app's data directory goes.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  fastSupervisorArgs,
  httpGet,
  randomUuid,
  repoRoot,
  SupervisorUnderTest,
} from "../runtime-plane-support.js";

const promisesApp = join(repoRoot, "test", "fixtures", "promises-app");
const spec = (extra: Record<string, unknown> = {}) => ({
  runtime: "process",
  artifact_dir: promisesApp,
  command: ["node", "server.mjs"],
  ...extra,
});

const sup = new SupervisorUnderTest(fastSupervisorArgs(10_000));
after(() => sup.cleanup());

describe("stateful data attacks", () => {
  test("a body cannot name the data directory, nor escape with .., nor mount without stateful", async () => {
    await sup.start();
    const uuid = randomUuid();
    for (const body of [
      spec({ stateful: true, data_dir: "/etc" }),
      spec({ stateful: true, dataDir: "/etc" }),
      spec({ stateful: true, data_mount: "/data/../../etc" }),
      spec({ stateful: true, data_mount: "data" }),
      spec({ stateful: true, data_mount: "/data,readonly=false" }),
      spec({ data_mount: "/data" }),
      spec({ stateful: "yes" }),
    ]) {
      const res = await sup.call("POST", `/v1/apps/${uuid}/start`, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(res.json)}`);
      assert.equal(res.json.code, "SPEC_INVALID");
    }
    assert.equal(Array.isArray((await sup.call("GET", "/v1/apps")).json.apps), true);
  });

  test("one stateful app cannot read another's data", async () => {
    const a = randomUuid();
    const b = randomUuid();
    const startedA = await sup.call("POST", `/v1/apps/${a}/start`, spec({ stateful: true }));
    const startedB = await sup.call("POST", `/v1/apps/${b}/start`, spec({ stateful: true }));
    assert.equal(startedA.status, 200, JSON.stringify(startedA.json));
    assert.equal(startedB.status, 200, JSON.stringify(startedB.json));
    assert.equal((await httpGet(startedA.json.bound_addr as string, "/write?v=secret-of-a")).status, 200);
    const note = join(sup.dataDir, "app-data", a, "note.txt");
    const peek = await httpGet(startedB.json.bound_addr as string, `/peek?path=${encodeURIComponent(note)}`);
    assert.equal(peek.status, 500, peek.body);
    assert.equal(JSON.parse(peek.body).error, "EACCES");
    assert.ok(!peek.body.includes("secret-of-a"));
    const aDir = statSync(join(sup.dataDir, "app-data", a));
    const bDir = statSync(join(sup.dataDir, "app-data", b));
    assert.notEqual(aDir.uid, bDir.uid, "each app's data belongs to its own uid");
    assert.notEqual(aDir.uid, 0, "never root's");
  });

  test("a symlink planted as an app's data directory is refused, its target left alone", async () => {
    const uuid = randomUuid();
    const target = mkdtempSync(join(tmpdir(), "tbf-planted-"));
    mkdirSync(join(sup.dataDir, "app-data"), { recursive: true });
    symlinkSync(target, join(sup.dataDir, "app-data", uuid));
    const before = statSync(target);
    const res = await sup.call("POST", `/v1/apps/${uuid}/start`, spec({ stateful: true }));
    assert.equal(res.status, 409, JSON.stringify(res.json));
    assert.equal(res.json.code, "APP_DATA_INVALID");
    const afterward = statSync(target);
    assert.deepEqual(
      [afterward.uid, afterward.mode],
      [before.uid, before.mode],
      "the target was not chowned",
    );
  });
});
