/**
 * An app that leaves the registry takes its env vars and secrets with it, in every environment.
 * The attack: an app is removed, and someone (here another tenant) creates an app again under the
 * same name and the same uuid, hoping to be handed the old secrets by `env list --reveal` or by
 * the supervisors' env route a workload of that uuid is started with.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { environmentUuid } from "../../src/core/address.js";
import { NODE_DB_FILE } from "../../src/node/node-store.js";
import { randomUuid } from "../runtime-plane-support.js";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "../support/tcli-node.js";
import { tempDir } from "../support/tools.js";

const SUPERVISOR_KEY = "recreated-app-supervisor-key-0123456789";
const SECRET_PROD = "s3cr3t-left-behind-prod-91c2e0";
const SECRET_STAGING = "s3cr3t-left-behind-staging-4d7ab3";

describe("a re-created app does not inherit the old app's secrets", () => {
  let stack: TcliStack;
  let home: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  const name = "shop";
  const as = (token: string) => ({
    home: home.path,
    env: { TABBIFY_TOKEN: token, TABBIFY_NODE_URL: stack.node.url },
  });
  const api = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${stack.node.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, text: await res.text() };
  };
  const supervisorEnv = async (runAs: string) => {
    const r = await api("GET", `/v1/supervisor/apps/${runAs}/env`, SUPERVISOR_KEY);
    assert.equal(r.status, 200, r.text);
    return (JSON.parse(r.text) as { env: Record<string, string> }).env;
  };

  before(async () => {
    home = await tempDir("tcli-recreated-home");
    stack = await startTcliStack({ supervisorKey: SUPERVISOR_KEY });
  });
  after(async () => {
    await stack?.close();
    await home?.remove();
  });

  it("removing the app removes its env rows in every environment", async () => {
    const put = await api("PUT", `/api/v1/apps/${name}`, stack.acmeToken, {
      uuid,
      environments: ["prod", "staging"],
    });
    assert.equal(put.status, 201, put.text);
    for (const [env, value] of [
      ["prod", SECRET_PROD],
      ["staging", SECRET_STAGING],
    ] as const) {
      const set = await runTcli(["env", "set", name, "--env", env, "--no-restart", "--from-stdin"], {
        ...as(stack.acmeToken),
        stdin: `DB_PASSWORD=${value}\n`,
      });
      assert.equal(set.code, 0, set.stderr);
    }
    assert.deepEqual(await supervisorEnv(uuid), { DB_PASSWORD: SECRET_PROD }, "the secret is there before");

    const rm = await api("DELETE", `/api/v1/apps/${name}`, stack.acmeToken);
    assert.equal(rm.status, 200, rm.text);
    // Sealed or not, no row of the app is left in the node's store.
    const db = new Database(join(stack.dataDir, NODE_DB_FILE), { readonly: true });
    try {
      const row = db.prepare("SELECT count(*) AS n FROM app_env WHERE app_uuid = ?").get(uuid) as {
        n: number;
      };
      assert.equal(row.n, 0);
    } finally {
      db.close();
    }
  });

  it("another tenant re-creating the same name and uuid sees no vars and its workloads get none", async () => {
    const put = await api("PUT", `/api/v1/apps/${name}`, stack.globexToken, {
      uuid,
      environments: ["prod", "staging"],
    });
    assert.equal(put.status, 201, put.text);
    for (const env of ["prod", "staging"]) {
      const list = await runTcli(["env", "list", name, "--env", env, "--json"], as(stack.globexToken));
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual((JSON.parse(list.stdout) as { vars: unknown[] }).vars, [], `no names in ${env}`);
      // The node key may reveal values; there are none to reveal.
      const reveal = await runTcli(["env", "list", name, "--env", env, "--reveal", "--json"], as(NODE_KEY));
      assert.equal(reveal.code, 0, reveal.stderr);
      assert.deepEqual((JSON.parse(reveal.stdout) as { values: unknown }).values, {});
      assert.ok(!reveal.stdout.includes(SECRET_PROD) && !reveal.stdout.includes(SECRET_STAGING));
    }
    assert.deepEqual(await supervisorEnv(uuid), {}, "a workload started as the uuid gets no old secret");
    assert.deepEqual(await supervisorEnv(environmentUuid(uuid, "staging")), {}, "nor one of its staging");
  });
});
