/**
 * `POST /v1/apps/:uuid/migrate` runs a command, so it is held to the deploy route's line: no key
 * (401) or a wrong one (403) runs nothing; a prod target handed an unpinned ref is REF_NOT_PINNED
 * and runs nothing; a malformed command, or an app held to an egress allow-list (a migration runs
 * without the runner's egress proxy), is a 400. And the answer never carries the app's env
 * values, even when the migration prints them: they are cut out of the log tail (and out of the
 * supervisor's own log). A migration that hangs is killed at its timeout.
 */
import assert from "node:assert/strict";
import { chmod, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { processSpec, randomUuid, SupervisorUnderTest } from "../runtime-plane-support.js";
import { tempDir } from "../support/tools.js";

const SECRET = "pg://admin:s3cr3t-migrate-value@db.internal/app";

describe("the supervisor's migrate route under attack", () => {
  let sup: SupervisorUnderTest;
  let marks: { path: string; remove(): Promise<void> };

  /** A migration that leaves a file behind: proof it ran. */
  const marking = (name: string) => [
    "node",
    "-e",
    `require("fs").writeFileSync(${JSON.stringify(join(marks.path, name))}, "x")`,
  ];

  before(async () => {
    marks = await tempDir("tabbify-migrate-marks");
    await chmod(marks.path, 0o777);
    sup = new SupervisorUnderTest();
    await sup.start();
  });
  after(async () => {
    await sup?.cleanup();
    await marks?.remove();
  });

  it("runs nothing without the key or with a wrong one", async () => {
    const uuid = randomUuid();
    const body = JSON.stringify({ ...processSpec(), migrate: marking("unauthed") });
    const url = `${sup.base}/v1/apps/${uuid}/migrate`;
    const none = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.equal(none.status, 401);
    const wrong = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${"x".repeat(sup.apiKey.length)}`,
      },
      body,
    });
    assert.equal(wrong.status, 403);
    assert.deepEqual(await readdir(marks.path), [], "no migration ran");
  });

  it("refuses unpinned refs for prod, egress-held apps and malformed commands with a 400, running nothing", async () => {
    const uuid = randomUuid();
    const refused: [Record<string, unknown>, string][] = [
      [{ runtime: "docker", ref: "busybox:latest", environment: "prod" }, "REF_NOT_PINNED"],
      [{ ...processSpec(), environment: "prod" }, "REF_NOT_PINNED"],
      [{ artifact_version: "latest", environment: "prod" }, "REF_NOT_PINNED"],
      // A migration has no egress proxy: run for an app held to an allow-list, it would reach anywhere.
      [{ ...processSpec(), egress: { allow: ["example.com"] } }, "SPEC_INVALID"],
    ];
    for (const [body, code] of refused) {
      const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, {
        ...body,
        migrate: marking("unpinned"),
      });
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(res.json)}`);
      assert.equal(res.json.code, code, JSON.stringify(res.json));
    }
    for (const migrate of [[], [""], "node -e 1", [1], undefined]) {
      const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, { ...processSpec(), migrate });
      assert.equal(res.status, 400, `${JSON.stringify(migrate)} → ${JSON.stringify(res.json)}`);
    }
    assert.deepEqual(await readdir(marks.path), [], "no migration ran");
    assert.deepEqual((await sup.call("GET", "/v1/apps")).json.apps, [], "nothing was started or recorded");
  });

  it("cuts the app's env values out of the log tail, exit code and all", async () => {
    const uuid = randomUuid();
    const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, {
      ...processSpec({ DATABASE_URL: SECRET }),
      migrate: [
        "node",
        "-e",
        'console.log("url=" + process.env.DATABASE_URL); console.error(process.env.DATABASE_URL); process.exit(4)',
      ],
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.exit_code, 4);
    assert.deepEqual(
      res.json.log_tail,
      ["url=[redacted]", "[redacted]"],
      "it ran with the env, printed nothing of it",
    );
    assert.ok(!JSON.stringify(res.json).includes("s3cr3t"));
    assert.ok(!sup.log.includes("s3cr3t"), "nor in the supervisor's log");
    assert.deepEqual((await sup.call("GET", "/v1/apps")).json.apps, [], "a migration starts no runner");
  });

  it("kills a migration that outlives its timeout", async () => {
    const uuid = randomUuid();
    const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, {
      ...processSpec(),
      migrate: ["node", "-e", 'console.log("waiting"); setTimeout(() => {}, 120000)'],
      timeout_sec: 1,
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.timed_out, true);
    assert.equal(res.json.exit_code, null);
    assert.deepEqual(res.json.log_tail, ["waiting"]);
  });
});
