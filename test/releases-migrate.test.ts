// The migration gate (issue 11 §6), end to end: a node and a process supervisor sharing an
// artifact store with `tcli push`. The app declares `[deploy] migrate = ["node", "migrate.mjs"]`;
// the migration appends a line to a file outside the app. A passing migration runs exactly once
// per rollout, before fan_out switches anything, and is audited; a failing one fails the rollout
// at step `migrate` with its log tail in the events while a request loop keeps getting the old
// release (zero failures); one that allocates past the app's memory_mb is killed in its cgroup and
// reported as such; a rollback skips it unless asked with --migrate.
import assert from "node:assert/strict";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { httpGet, sleep } from "./runtime-plane-support.js";
import { type PushedRelease, type PushStack, startPushStack } from "./support/push-stack.js";
import { tempDir } from "./support/tools.js";

const MEMORY_MB = 192;

const MANIFEST = `[app]
name = "migrate-app"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.mjs"]
memory_mb = ${MEMORY_MB}

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

/** Touches three times the app's memory_mb, a page at a time, then would exit 0. */
const hog = `const chunks = [];
console.log("allocating");
for (let i = 0; i < ${MEMORY_MB * 3}; i++) chunks.push(Buffer.alloc(1024 * 1024, 1));
console.log("allocated " + chunks.length + " MB");
`;

interface AuditRow {
  action: string;
  actor: string;
  subject: string;
  after?: Record<string, unknown>;
}

let stack: PushStack;
let ledger: string;
let ledgerDir: { path: string; remove(): Promise<void> };

const push = (body: string, label: string, code: number) =>
  stack.push({ "server.mjs": server(body), "migrate.mjs": migration(ledger, label, code) });
const ledgerLines = async () => (await readFile(ledger, "utf8").catch(() => "")).split("\n").filter(Boolean);
const viaNode = (uuid: string) => httpGet(new URL(stack.node.url).host, `/app/${uuid}/`, 10_000);
const migrationRows = async (deployId: string) =>
  ((await stack.audit()) as AuditRow[]).filter(
    (e) => e.subject === `deploy:${deployId}` && e.action.startsWith("deploy.migrate."),
  );

/** Requests `app` without pause while `during` runs; returns every answer. */
async function underLoad(
  app: string,
  during: () => Promise<void>,
): Promise<{ status: number; body: string }[]> {
  const answers: { status: number; body: string }[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling)
      answers.push(await viaNode(app).catch((err: Error) => ({ status: 0, body: err.message })));
  })();
  try {
    await during();
    await sleep(300);
  } finally {
    polling = false;
    await poller;
  }
  return answers;
}

before(async () => {
  // The migration runs as the app's own user: the ledger must be writable by anyone.
  ledgerDir = await tempDir("tabbify-migrate-ledger");
  await chmod(ledgerDir.path, 0o777);
  ledger = join(ledgerDir.path, "migrations.log");
  await writeFile(ledger, "", { mode: 0o666 });
  await chmod(ledger, 0o666);
  stack = await startPushStack({
    label: "releases-migrate",
    supervisorName: "sup-m",
    manifestToml: MANIFEST,
  });
});

after(async () => {
  await stack?.close();
  await ledgerDir?.remove();
});

describe("the migration gate", () => {
  let app = "";
  let one: PushedRelease;
  let two: PushedRelease;

  it("a passing migration runs exactly once per rollout, before fan_out switches anything, audited", async () => {
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
    const uids = (await readFile(`${ledger}.uids`, "utf8")).split("\n").filter(Boolean);
    assert.equal(uids.length, 2);
    assert.ok(!uids.includes("0"), `never as root (uids ${uids.join(", ")})`);
    const seen = await stack.events(two.rollout.deploy_id!);
    const migrated = seen.find((e) => e.step === "migrate" && e.type === "step_finished");
    const fanOut = seen.find((e) => e.step === "fan_out" && e.type === "step_started");
    assert.ok(migrated && fanOut && migrated.seq < fanOut.seq, "migrate finished before fan_out began");
    assert.ok(seen.some((e) => e.step === "migrate" && e.type === "log" && e.message === "migrating two"));

    const rows = await migrationRows(two.rollout.deploy_id!);
    assert.deepEqual(
      rows.map((r) => r.action),
      ["deploy.migrate.started", "deploy.migrate.finished"],
    );
    const [started, finished] = rows as [AuditRow, AuditRow];
    assert.equal(started.actor, finished.actor);
    assert.match(started.actor, /^node-key:/, "the push's actor");
    for (const row of rows) {
      assert.equal(row.after?.app_uuid, app);
      assert.equal(row.after?.digest, two.digest);
      assert.equal(row.after?.release, two.id);
      assert.equal(row.after?.environment, "prod");
      assert.equal(row.after?.target, "sup-m");
    }
    assert.equal(finished.after?.outcome, "passed");
    assert.equal(finished.after?.exit_code, 0);
    assert.equal(typeof finished.after?.duration_ms, "number");
    assert.ok(!JSON.stringify(rows).includes("migrating two"), "no log line in the audit");
  });

  it("a failing migration fails the rollout at step migrate and leaves the old release serving", async () => {
    assert.ok(app, "the first test ran");
    let three: PushedRelease | undefined;
    const answers = await underLoad(app, async () => {
      three = (await push("three", "three", 3)).release;
    });
    assert.equal(three?.rollout?.state, "failed", JSON.stringify(three));
    assert.equal(three.rollout.code, "MIGRATION_FAILED");
    assert.ok(answers.length > 0);
    const failures = answers.filter((a) => a.status !== 200 || a.body !== "two\n");
    assert.deepEqual(failures, [], `every answer came from the old release (${answers.length} requests)`);
    assert.equal((await stack.sup.call("GET", `/v1/apps/${app}`)).json.artifact_version, "v2");
    const record = await stack.newestDeploy(app);
    assert.equal(record.state, "failed", JSON.stringify(record));
    assert.equal(record.error?.step, "migrate");
    assert.equal(record.error?.code, "MIGRATION_FAILED");
    const seen = await stack.events(record.id);
    assert.ok(
      seen.some(
        (e) => e.step === "migrate" && e.type === "log" && e.message === "migration three broke: exit 3",
      ),
      "the log tail is in the events",
    );
    assert.ok(seen.some((e) => e.step === "migrate" && e.type === "step_failed"));
    assert.ok(!seen.some((e) => e.step === "fan_out"), "no target was asked to switch");
    const finished = (await migrationRows(record.id)).find((r) => r.action === "deploy.migrate.finished");
    assert.equal(finished?.after?.outcome, "failed", JSON.stringify(finished));
    assert.equal(finished?.after?.exit_code, 3);
  });

  it("a migration that allocates past the app's memory_mb is killed in its cgroup and reported oom", async () => {
    assert.ok(app, "the first test ran");
    const before = (await ledgerLines()).length;
    let oom: PushedRelease | undefined;
    const answers = await underLoad(app, async () => {
      oom = (await stack.push({ "server.mjs": server("oom"), "migrate.mjs": hog })).release;
    });
    assert.equal(oom?.rollout.state, "failed", JSON.stringify(oom));
    assert.equal(oom.rollout.code, "MIGRATION_FAILED");
    assert.match(oom.rollout.error ?? "", /memory limit \(oom\)/, oom.rollout.error);
    assert.deepEqual(
      answers.filter((a) => a.status !== 200 || a.body !== "two\n"),
      [],
      `the old release kept serving (${answers.length} requests)`,
    );
    assert.equal((await ledgerLines()).length, before);
    const record = await stack.newestDeploy(app);
    const seen = await stack.events(record.id);
    assert.ok(seen.some((e) => e.step === "migrate" && e.message === "allocating"));
    assert.ok(!seen.some((e) => /^allocated/.test(e.message ?? "")), "it never got to the end");
    const failed = seen.find((e) => e.step === "migrate" && e.type === "step_failed");
    assert.match(failed?.message ?? "", /oom/);
    const finished = (await migrationRows(record.id)).find((r) => r.action === "deploy.migrate.finished");
    assert.equal(finished?.after?.outcome, "oom", JSON.stringify(finished));
    assert.equal(finished?.after?.signal, "SIGKILL");
  });

  it("a rollback skips the migration unless --migrate is given", async () => {
    assert.ok(two, "the first test ran");
    const before = (await ledgerLines()).length;
    const back = await stack.tcli<{ deploy_id: string }>(["rollback", app, "--to", one.id]);
    assert.equal((await viaNode(app)).body, "one\n");
    assert.equal((await ledgerLines()).length, before, "no migration on a plain rollback");
    const skipped = await stack.events(back.deploy_id);
    assert.ok(skipped.some((e) => e.step === "migrate" && /skipped on rollback/.test(e.message ?? "")));
    assert.deepEqual(await migrationRows(back.deploy_id), [], "nothing ran, nothing audited");

    const again = await stack.tcli<{ deploy_id: string }>(["rollback", app, "--to", two.id, "--migrate"]);
    assert.equal((await viaNode(app)).body, "two\n");
    assert.deepEqual((await ledgerLines()).slice(before), [`two ${two.id}`], "--migrate ran it once");
    const rows = await migrationRows(again.deploy_id);
    assert.equal(rows.length, 2);
    assert.equal(rows[1]?.after?.release, two.id);
  });
});
