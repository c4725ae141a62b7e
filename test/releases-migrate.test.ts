// The migration gate (issue 11 §6), end to end: a node and a process supervisor sharing an
// artifact store with `tcli push`. The app declares `[deploy] migrate = ["node", "migrate.mjs"]`;
// the migration appends a line to a file outside the app. A passing migration runs exactly once
// per rollout, before fan_out switches anything; a failing one fails the rollout at step
// `migrate` with its log tail in the events while a request loop keeps getting the old release
// (zero failures); a rollback skips it unless asked with --migrate.
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../src/node/index.js";
import { httpGet, SupervisorUnderTest, sleep } from "./runtime-plane-support.js";
import { runTcli } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const NODE_KEY = "releases-migrate-e2e-node-key";
const SUPERVISOR_KEY = "releases-migrate-e2e-supervisor-key";

const MANIFEST = `[app]
name = "migrate-app"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.mjs"]

[deploy]
migrate = ["node", "migrate.mjs"]

[[environments]]
name = "prod"
targets = ["sup-m"]
`;

function server(body: string): string {
  return `import http from "node:http";
http.createServer((req, res) => res.end(${JSON.stringify(`${body}\n`)}))
  .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;
}

/** Appends `<label> <release>` to the ledger; exits `code` after printing a last line. */
function migration(ledger: string, label: string, code: number): string {
  return `import { appendFileSync } from "node:fs";
appendFileSync(${JSON.stringify(ledger)}, ${JSON.stringify(label)} + " " + (process.env.TABBIFY_RELEASE ?? "") + "\\n");
appendFileSync(${JSON.stringify(`${ledger}.uids`)}, process.getuid() + "\\n");
console.log("migrating ${label}");
${code === 0 ? "" : `console.error("migration ${label} broke: exit ${code}");`}
process.exit(${code});
`;
}

interface Rollout {
  environment: string;
  state: "succeeded" | "failed" | "skipped";
  code?: string;
  deploy_id?: string;
}
interface PushedRelease {
  id: string;
  rollout: Rollout;
}
interface DeployStatus {
  id: string;
  app_uuid?: string;
  created_at: string;
  state: string;
  error?: { step: string; code: string };
}
interface DeployEvent {
  seq: number;
  step: string;
  type: string;
  message?: string;
}

let root: { path: string; remove(): Promise<void> };
let node: RunningNode;
let sup: SupervisorUnderTest;
let storeDir: string;
let appDir: string;
let ledger: string;
let ledgerDir: { path: string; remove(): Promise<void> };

async function push(
  body: string,
  label: string,
  code: number,
): Promise<{ appId: string; release: PushedRelease }> {
  await writeFile(join(appDir, "server.mjs"), server(body));
  await writeFile(join(appDir, "migrate.mjs"), migration(ledger, label, code));
  const run = await runTcli(
    ["push", appDir, "--store", "local", "--store-dir", storeDir, "--json", "--node", node.url],
    { home: join(root.path, "cli-home"), env: { TABBIFY_TOKEN: NODE_KEY } },
  );
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as { appId: string; release: PushedRelease };
}

async function events(deployId: string): Promise<DeployEvent[]> {
  const res = await fetch(`${node.url}/v1/deploy/${deployId}/events`, {
    headers: { authorization: `Bearer ${NODE_KEY}` },
  });
  assert.equal(res.status, 200);
  return (await res.text())
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => JSON.parse(line.slice(5)) as DeployEvent);
}

const ledgerLines = async () => (await readFile(ledger, "utf8").catch(() => "")).split("\n").filter(Boolean);
const viaNode = (uuid: string) => httpGet(new URL(node.url).host, `/app/${uuid}/`, 10_000);

before(async () => {
  root = await tempDir("tabbify-releases-migrate");
  storeDir = join(root.path, "store");
  appDir = join(root.path, "app");
  // The migration runs as the app's own user: the ledger must be writable by anyone.
  ledgerDir = await tempDir("tabbify-migrate-ledger");
  await chmod(ledgerDir.path, 0o777);
  ledger = join(ledgerDir.path, "migrations.log");
  await writeFile(ledger, "", { mode: 0o666 });
  await chmod(ledger, 0o666);
  await mkdir(appDir, { recursive: true });
  await mkdir(join(root.path, "cli-home"), { recursive: true });
  await writeFile(join(appDir, "manifest.toml"), MANIFEST);
  node = await startNode({
    port: 0,
    dataDir: join(root.path, "node"),
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: { supervisorKey: SUPERVISOR_KEY },
  });
  sup = new SupervisorUnderTest(
    ["--node", node.url, "--name", "sup-m", "--store", "local", "--store-dir", storeDir],
    "local",
    { TABBIFY_NODE_KEY: NODE_KEY, SUPERVISOR_API_KEY: SUPERVISOR_KEY },
  );
  await sup.start();
  const deadline = Date.now() + 20_000;
  while (!node.coordinator.supervisors().some((s) => s.name === "sup-m")) {
    if (Date.now() > deadline) throw new Error(`sup-m never joined the roster\n${sup.log}`);
    await sleep(100);
  }
});

after(async () => {
  await sup?.cleanup();
  await node?.close();
  await root?.remove();
  await ledgerDir?.remove();
});

describe("the migration gate", () => {
  let app = "";
  let one: PushedRelease;
  let two: PushedRelease;

  it("a passing migration runs exactly once per rollout, before fan_out switches anything", async () => {
    const first = await push("one", "one", 0);
    app = first.appId;
    one = first.release;
    assert.equal(one.rollout.state, "succeeded", JSON.stringify(one.rollout));
    assert.equal((await viaNode(app)).body, "one\n");
    assert.deepEqual(
      await ledgerLines(),
      [`one ${one.id}`],
      "once, in the new release (its TABBIFY_RELEASE)",
    );

    two = (await push("two", "two", 0)).release;
    assert.equal(two.rollout.state, "succeeded", JSON.stringify(two.rollout));
    assert.equal((await viaNode(app)).body, "two\n");
    assert.deepEqual(await ledgerLines(), [`one ${one.id}`, `two ${two.id}`]);
    const seen = await events(two.rollout.deploy_id!);
    const migrated = seen.find((e) => e.step === "migrate" && e.type === "step_finished");
    const fanOut = seen.find((e) => e.step === "fan_out" && e.type === "step_started");
    assert.ok(migrated && fanOut && migrated.seq < fanOut.seq, "migrate finished before fan_out began");
    assert.ok(seen.some((e) => e.step === "migrate" && e.type === "log" && e.message === "migrating two"));
  });

  it("a failing migration fails the rollout at step migrate and leaves the old release serving", async () => {
    assert.ok(app, "the first test ran");
    const answers: { status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling)
        answers.push(await viaNode(app).catch((err: Error) => ({ status: 0, body: err.message })));
    })();
    let three: PushedRelease;
    try {
      three = (await push("three", "three", 3)).release;
      await sleep(300);
    } finally {
      polling = false;
      await poller;
    }
    assert.equal(three.rollout?.state, "failed", JSON.stringify(three));
    assert.equal(three.rollout.code, "MIGRATION_FAILED");
    assert.ok(answers.length > 0);
    const failures = answers.filter((a) => a.status !== 200 || a.body !== "two\n");
    assert.deepEqual(failures, [], `every answer came from the old release (${answers.length} requests)`);
    assert.equal((await sup.call("GET", `/v1/apps/${app}`)).json.artifact_version, "v2");
    // A failed push rollout answers without its deploy id: the newest deploy of the app is it.
    const listed = await fetch(`${node.url}/v1/deploys`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    const deploys = ((await listed.json()) as { deploys: DeployStatus[] }).deploys
      .filter((d) => d.app_uuid === app)
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
    const record = deploys[0]!;
    assert.equal(record.state, "failed", JSON.stringify(record));
    assert.equal(record.error?.step, "migrate");
    assert.equal(record.error?.code, "MIGRATION_FAILED");
    const seen = await events(record.id);
    assert.ok(
      seen.some(
        (e) => e.step === "migrate" && e.type === "log" && e.message === "migration three broke: exit 3",
      ),
      "the log tail is in the events",
    );
    assert.ok(seen.some((e) => e.step === "migrate" && e.type === "step_failed"));
    assert.ok(!seen.some((e) => e.step === "fan_out"), "no target was asked to switch");
  });

  it("a rollback skips the migration unless --migrate is given", async () => {
    assert.ok(two, "the first test ran");
    const home = join(root.path, "cli-home");
    const env = { TABBIFY_TOKEN: NODE_KEY };
    const before = (await ledgerLines()).length;
    const back = await runTcli(["rollback", app, "--to", one.id, "--json", "--node", node.url], {
      home,
      env,
    });
    assert.equal(back.code, 0, back.stderr);
    assert.equal((await viaNode(app)).body, "one\n");
    assert.equal((await ledgerLines()).length, before, "no migration on a plain rollback");
    const skipped = await events((JSON.parse(back.stdout) as { deploy_id: string }).deploy_id);
    assert.ok(skipped.some((e) => e.step === "migrate" && /skipped on rollback/.test(e.message ?? "")));

    const again = await runTcli(
      ["rollback", app, "--to", two.id, "--migrate", "--json", "--node", node.url],
      { home, env },
    );
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await viaNode(app)).body, "two\n");
    assert.deepEqual((await ledgerLines()).slice(before), [`two ${two.id}`], "--migrate ran it once");
  });
});
