/**
 * Attacks on a supervisor's platform routes, POST /v1/platform/handoff (it replaces itself with
 * another release) and POST /v1/runners/restart: without the supervisors' key nothing is stored
 * or started; with it, a version that names a path, one not kept on the host, the one running,
 * or a tarball that is no release are refused, nothing is left on disk and the same process
 * keeps serving.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SupervisorUnderTest } from "../runtime-plane-support.js";

describe("upgrade: a supervisor's handoff and runner-restart routes", () => {
  const sup = new SupervisorUnderTest(["--warm-spares", "0"]);
  let running: string;
  before(async () => {
    await sup.start();
    running = ((await (await fetch(`${sup.base}/api/version`)).json()) as { version: string }).version;
  });
  after(async () => {
    await sup.cleanup();
  });

  const post = (path: string, headers: Record<string, string>, body?: string | Buffer) =>
    fetch(`${sup.base}${path}`, { method: "POST", headers, ...(body !== undefined ? { body } : {}) });
  const leftOnDisk = () =>
    ["platform-upgrades", "releases"].flatMap((d) => {
      const path = join(sup.dataDir, d);
      return existsSync(path) ? readdirSync(path).map((f) => `${d}/${f}`) : [];
    });

  it("refuses both routes without the supervisors' key and stores nothing", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer not-the-key" },
      { authorization: `Bearer ${sup.apiKey}x` },
    ];
    for (const headers of attempts) {
      const upload = await post(
        "/v1/platform/handoff",
        { ...headers, "content-type": "application/octet-stream" },
        Buffer.alloc(64 * 1024, 1),
      );
      assert.ok([401, 403].includes(upload.status), `${JSON.stringify(headers)}: ${upload.status}`);
      const restart = await post("/v1/runners/restart", headers);
      assert.ok([401, 403].includes(restart.status), `${JSON.stringify(headers)}: ${restart.status}`);
    }
    assert.deepEqual(leftOnDisk(), []);
  });

  it("with the key, refuses versions that are paths, unknown or running, and tarballs that are no release", async () => {
    const auth = { authorization: `Bearer ${sup.apiKey}` };
    const json = { ...auth, "content-type": "application/json" };
    const cases: [string, number, string | undefined][] = [
      [JSON.stringify({ version: "../../../etc" }), 400, undefined],
      [JSON.stringify({ version: "/tmp/x" }), 400, undefined],
      [JSON.stringify({}), 400, undefined],
      [JSON.stringify({ version: "99.0.0" }), 404, "RELEASE_NOT_FOUND"],
      [JSON.stringify({ version: running }), 409, "RELEASE_RUNNING"],
    ];
    for (const [body, status, code] of cases) {
      const res = await post("/v1/platform/handoff", json, body);
      const answer = (await res.json()) as { code?: string };
      assert.equal(res.status, status, `${body}: ${JSON.stringify(answer)}`);
      if (code) assert.equal(answer.code, code, body);
    }
    const garbage = await post(
      "/v1/platform/handoff",
      { ...auth, "content-type": "application/octet-stream" },
      Buffer.alloc(64 * 1024, 7),
    );
    assert.ok(garbage.status >= 400 && garbage.status < 500, `garbage tarball: ${garbage.status}`);
    // Nothing kept: the upload is removed and no release directory was made.
    assert.deepEqual(
      leftOnDisk().filter((f) => f !== "releases/state.json"),
      [],
    );
    // The same process still serves.
    assert.equal((await fetch(`${sup.base}/health`)).status, 200);
    assert.equal(sup.pid !== undefined && existsSync(`/proc/${sup.pid}`), true);
  });
});
