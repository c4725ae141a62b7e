/**
 * A migration is audited, and its audit rows are where a careless app would leak its secrets: the
 * app's env holds a database URL (set through the node's sealed env), the migration prints it on
 * stdout and stderr and fails, and its declared command carries a password in an argument. None
 * of it reaches the audit chain (the migration's rows name the program, never its arguments, env
 * or output), the deploy's events or its error; the tail in the events shows `[redacted]`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type PushStack, startPushStack } from "../support/push-stack.js";

const SECRET = "pg://admin:s3cr3t-audit-value@db.internal/app";
const ARG_SECRET = "argpw-9f2c41d7e0b3";

const MANIFEST = `[app]
name = "migrate-audit"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.mjs"]

[deploy]
migrate = ["node", "migrate.mjs", "--password=${ARG_SECRET}"]

[[environments]]
name = "prod"
targets = ["sup-audit"]
`;

const SERVER = `import http from "node:http";
http.createServer((req, res) => res.end("ok\\n")).listen(Number(process.env.PORT), process.env.HOST);
process.on("SIGTERM", () => process.exit(0));
`;

/** Prints the secret and its argument everywhere it can; fails when the secret is set. */
const LEAKY = `const url = process.env.DATABASE_URL ?? "";
console.log("connecting to " + url + " with " + process.argv.slice(2).join(" "));
console.error("error: " + url);
process.exit(url ? 7 : 0);
`;

describe("a migration's audit rows under attack", () => {
  let stack: PushStack;

  before(async () => {
    stack = await startPushStack({
      label: "migrate-audit",
      supervisorName: "sup-audit",
      manifestToml: MANIFEST,
    });
  });
  after(async () => {
    await stack?.close();
  });

  it("keeps the app's env, the command's arguments and its output out of the audit chain", async () => {
    const first = await stack.push({ "server.mjs": SERVER, "migrate.mjs": LEAKY });
    assert.equal(first.release.rollout.state, "succeeded", JSON.stringify(first.release.rollout));
    const app = first.appId;
    const set = await stack.api("POST", `/api/v1/apps/${app}/env`, { set: { DATABASE_URL: SECRET } });
    assert.equal(set.status, 200, JSON.stringify(set.json));

    const second = await stack.push({ "migrate.mjs": `${LEAKY}// v2\n` });
    assert.equal(second.release.rollout.state, "failed", JSON.stringify(second.release.rollout));
    assert.equal(second.release.rollout.code, "MIGRATION_FAILED");
    assert.ok(!JSON.stringify(second).includes("s3cr3t"), "not in the push's answer");

    const record = await stack.newestDeploy(app);
    const events = await stack.events(record.id);
    const tail = events.filter((e) => e.step === "migrate" && e.type === "log").map((e) => e.message);
    assert.ok(
      tail.includes("error: [redacted]"),
      `the tail is in the events, redacted: ${JSON.stringify(tail)}`,
    );
    assert.ok(!JSON.stringify(events).includes("s3cr3t"), "no event carries the env value");
    assert.ok(!JSON.stringify(record).includes("s3cr3t"), "nor the deploy record");

    const audit = await stack.audit();
    const rows = audit.filter(
      (e) => e.subject === `deploy:${record.id}` && e.action.startsWith("deploy.migrate."),
    );
    assert.deepEqual(
      rows.map((r) => r.action),
      ["deploy.migrate.started", "deploy.migrate.finished"],
    );
    assert.equal((rows[1]!.after as Record<string, unknown>).exit_code, 7);
    assert.equal((rows[1]!.after as Record<string, unknown>).program, "node");
    const chain = JSON.stringify(audit);
    assert.ok(!chain.includes("s3cr3t"), "the env value is nowhere in the audit chain");
    assert.ok(!chain.includes(ARG_SECRET), "the command's arguments are nowhere in the audit chain");
    assert.ok(!chain.includes("connecting to"), "the output is nowhere in the audit chain");
    assert.ok(!stack.sup.log.includes("s3cr3t"), "nor in the supervisor's log");
  });
});
