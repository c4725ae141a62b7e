/**
 * `tcli env`: three distinctive secret values set through the compiled tcli (from stdin), a
 * restart (swap) onto them, another swap, a start that fails on purpose. The workload must see
 * the values; nothing else may: every file under the node's and the supervisor's data dirs (the
 * store holds them sealed), every log, every API answer but `--reveal`, every process's argv.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fastSupervisorArgs, randomUuid, SupervisorUnderTest, until } from "../runtime-plane-support.js";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "../support/tcli-node.js";
import { tempDir } from "../support/tools.js";

const SECRETS = {
  DB_PASSWORD: "s3cr3t-env-alpha-7f3a9c",
  API_TOKEN: "s3cr3t-env-bravo-2b8d41",
  SIGNING_KEY: "s3cr3t-env-charlie-e5c0d7",
};
const VALUES = Object.values(SECRETS);

/** Answers with the three env vars it was given (the workload's own environment). */
const envApp = `import http from "node:http";
import { existsSync } from "node:fs";
if (existsSync(process.env.FAIL_FILE)) { console.error("env-app refusing to start"); process.exit(3); }
const names = ["DB_PASSWORD", "API_TOKEN", "SIGNING_KEY"];
http.createServer((_q, s) => s.end(JSON.stringify(Object.fromEntries(names.map((n) => [n, process.env[n] ?? null])))))
  .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

/** Files under `dirs` holding any of the values (grep -a: binary files like the SQLite store too). */
function filesHolding(dirs: string[]): string[] {
  const r = spawnSync("grep", ["-rlaF", ...VALUES.flatMap((v) => ["-e", v]), ...dirs], { encoding: "utf8" });
  assert.ok(r.status === 0 || r.status === 1, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

describe("tcli env keeps secret values to the workload", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let home: { path: string; remove(): Promise<void> };
  let appDir: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  const failFile = join(tmpdir(), `tcli-env-fail-${uuid}`);
  const answers: string[] = [];
  const admin = () => ({
    home: home.path,
    env: { TABBIFY_TOKEN: NODE_KEY, TABBIFY_NODE_URL: stack.node.url },
  });
  const tcli = async (args: string[], stdin?: string) => {
    const r = await runTcli(args, { ...admin(), ...(stdin !== undefined ? { stdin } : {}) });
    answers.push(r.stdout, r.stderr);
    return r;
  };
  const api = async (path: string, token = NODE_KEY) => {
    const res = await fetch(`${stack.node.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, text };
  };
  const served = async () => {
    const res = await fetch(`${stack.node.url}/app/${uuid}/`);
    return (await res.json()) as Record<string, string | null>;
  };

  before(async () => {
    home = await tempDir("tcli-env-home");
    appDir = await tempDir("tcli-env-app");
    await writeFile(join(appDir.path, "env-app.mjs"), envApp);
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "process",
      artifact_dir: appDir.path,
      command: ["node", "env-app.mjs"],
      env: { FAIL_FILE: failFile },
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    await until(
      "the app in the registry",
      async () => ((await api(`/api/v1/apps/${uuid}`)).status === 200 ? true : undefined),
      20_000,
    );
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await home?.remove();
    await appDir?.remove();
    await rm(failFile, { force: true });
  });

  it("sets values from stdin, restarts onto them, and the workload has them", async () => {
    assert.deepEqual(await served(), { DB_PASSWORD: null, API_TOKEN: null, SIGNING_KEY: null });
    const dotenv = `# secrets\nDB_PASSWORD=${SECRETS.DB_PASSWORD}\nexport API_TOKEN="${SECRETS.API_TOKEN}"\nSIGNING_KEY=${SECRETS.SIGNING_KEY}\n`;
    const set = await tcli(["env", "set", uuid, "--from-stdin"], dotenv);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /set API_TOKEN, set DB_PASSWORD, set SIGNING_KEY/);
    assert.match(set.stdout, /^test-sup +ok +running/m);
    assert.deepEqual(await served(), SECRETS);
    const pid = (await sup.call("GET", `/v1/apps/${uuid}`)).json.workload_pid as number;
    const environ = await readFile(`/proc/${pid}/environ`, "utf8");
    for (const v of VALUES) assert.ok(environ.includes(v), "the workload's own environment");
  });

  it("lists names only; values only with --reveal and the node key; tenants stay out", async () => {
    const list = await tcli(["env", "list", uuid]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^API_TOKEN +\S+$/m);
    const acme = await runTcli(["env", "list", uuid, "--reveal"], {
      home: home.path,
      env: { TABBIFY_TOKEN: stack.acmeToken, TABBIFY_NODE_URL: stack.node.url },
    });
    assert.equal(acme.code, 1);
    assert.match(acme.stderr, /is not in the registry/);
    const foreignSet = await runTcli(["env", "set", uuid, "X=1"], {
      home: home.path,
      env: { TABBIFY_TOKEN: stack.acmeToken, TABBIFY_NODE_URL: stack.node.url },
    });
    assert.equal(foreignSet.code, 1);
    // --reveal is the one answer allowed to carry them: not added to `answers`.
    const reveal = await runTcli(["env", "list", uuid, "--reveal", "--json"], admin());
    assert.equal(reveal.code, 0, reveal.stderr);
    assert.deepEqual((JSON.parse(reveal.stdout) as { values: unknown }).values, SECRETS);
    const bad = await tcli(["env", "set", uuid, "PORT=1"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /PORT is set by Tabbify itself/);
    const noEq = await tcli(["env", "set", uuid, "JUSTAVALUE"]);
    assert.equal(noEq.code, 2);
    const supOnly = await fetch(`${stack.node.url}/v1/supervisor/apps/${uuid}/env`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    assert.equal(supOnly.status, 401, "the supervisors' route does not take the node key");
    await supOnly.body?.cancel();
  });

  it("keeps the values through a swap, an unset, and a start that fails on purpose", async () => {
    const restart = await tcli(["restart", uuid]);
    assert.equal(restart.code, 0, restart.stderr);
    assert.deepEqual(await served(), SECRETS);
    const unset = await tcli(["env", "unset", uuid, "SIGNING_KEY", "--no-restart"]);
    assert.equal(unset.code, 0, unset.stderr);
    assert.match(unset.stdout, /unset SIGNING_KEY\nnot restarted/);
    assert.deepEqual(await served(), SECRETS, "--no-restart leaves the running workload alone");
    const again = await tcli(["env", "set", uuid, "--from-stdin"], `SIGNING_KEY=${SECRETS.SIGNING_KEY}\n`);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await tcli(["stop", uuid])).code, 0);
    await writeFile(failFile, "");
    const failed = await tcli(["start", uuid]);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /env-app refusing to start/);
    await rm(failFile, { force: true });
  });

  it("leaves the values nowhere else: data dirs, logs, API answers, audit, argv", async () => {
    for (const path of [
      `/api/v1/apps/${uuid}`,
      `/api/v1/apps/${uuid}/runtime-status`,
      `/api/v1/apps/${uuid}/env`,
      "/api/v1/audit?limit=1000",
      "/v1/apps",
      "/v1/topology",
    ]) {
      await api(path);
    }
    await tcli(["status", uuid]);
    await tcli(["logs", uuid, "--tail", "1000"]);
    for (const text of answers)
      for (const v of VALUES) assert.ok(!text.includes(v), `an answer holds ${v}: ${text.slice(0, 300)}`);
    const audit = await api("/api/v1/audit?limit=1000");
    assert.match(audit.text, /app\.env\.change/);
    assert.match(audit.text, /SIGNING_KEY/, "names are audited");
    assert.deepEqual(filesHolding([stack.dataDir, sup.dataDir, appDir.path, home.path]), []);
    const ps = spawnSync("ps", ["-eo", "args"], { encoding: "utf8" });
    for (const v of VALUES) assert.ok(!ps.stdout.includes(v), "no process's argv");
  });
});
