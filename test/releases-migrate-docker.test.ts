// The migration gate's docker branch (issue 11 §6), end to end through the build path: a commit
// to the GitHub double is built by a real `tabbify supervisor --builder` into a FROM-scratch
// busybox image, pushed to the real registry (auth on), and its `[deploy] migrate` runs with
// `docker run` of the pinned image on dockerd before fan_out. The migration reports to a ledger
// server on the host's loopback (reachable only through the host network every docker workload of
// the app has): which release it ran as, its uid and its effective capabilities.
//
// - a passing migration runs exactly once, before fan_out, unprivileged, with no capabilities and
//   the app's env; no container is left behind; it is audited with the release's digest;
// - a failing one (printing a secret of the app's env) fails the deploy at `migrate` with the
//   secret redacted in its tail, while a request loop keeps getting the old release.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { AuditEvent } from "../src/ledger/chain.js";
import { httpGet, sleep } from "./runtime-plane-support.js";
import { type BuildStack, startBuildStack } from "./support/build-stack.js";
import { deployEvents } from "./support/node-api.js";

const SECRET = "pg://admin:s3cr3t-docker-migrate@db.internal/app";

const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  "COPY www /www",
  "COPY migrate.sh /migrate.sh",
  `ENTRYPOINT ["/bin/busybox", "sh", "-c", "/bin/busybox httpd -f -p \${HOST}:\${PORT} -h /www & trap 'kill $!; exit 0' TERM; wait"]`,
  "",
].join("\n");

const TOML = `[app]
name = "mig-docker"

[env]
GREETING = "hello-from-the-app-env"

[deploy]
migrate = ["/bin/busybox", "sh", "/migrate.sh"]
`;

/** Tells the ledger it ran (label, release, uid, CapEff, an env var), prints, exits `code`. */
function migrateScript(ledgerPort: number, label: string, code: number): string {
  return `B=/bin/busybox
uid=$($B id -u)
cap=$($B awk '/^CapEff/ {print $2}' /proc/self/status)
echo "migrating ${label} as $uid"
echo "db=$DATABASE_URL"
$B wget -q -O /dev/null "http://127.0.0.1:${ledgerPort}/ran?label=${label}&release=$TABBIFY_RELEASE&uid=$uid&cap=$cap&greeting=$GREETING" || echo "ledger unreachable"
${code === 0 ? "" : `echo "migration ${label} broke: exit ${code}" >&2`}
exit ${code}
`;
}

interface Ran {
  label: string;
  release: string;
  uid: string;
  cap: string;
  greeting: string;
}

let stack: BuildStack;
let ledger: Server;
let ledgerPort: number;
const ran: Ran[] = [];

const events = (deployId: string) => deployEvents(stack.node.url, stack.nodeKey, deployId);

const migrationRows = async (deployId: string): Promise<AuditEvent[]> => {
  const { json } = await stack.api<{ events: AuditEvent[] }>("GET", "/api/v1/audit?limit=1000");
  return json.events.filter(
    (e) => e.subject === `deploy:${deployId}` && e.action.startsWith("deploy.migrate."),
  );
};

const migrationContainers = (app: string): string[] =>
  execFileSync("docker", ["ps", "-a", "-q", "--filter", `label=tabbify.migrate=${app}`], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean);

before(async () => {
  ledger = createServer((req, res) => {
    const query = new URL(req.url ?? "/", "http://ledger").searchParams;
    ran.push({
      label: query.get("label") ?? "",
      release: query.get("release") ?? "",
      uid: query.get("uid") ?? "",
      cap: query.get("cap") ?? "",
      greeting: query.get("greeting") ?? "",
    });
    res.end("ok\n");
  });
  await new Promise<void>((resolve) => ledger.listen(0, "127.0.0.1", resolve));
  ledgerPort = (ledger.address() as AddressInfo).port;
  stack = await startBuildStack({
    label: "releases-migrate-docker",
    owner: "migco",
    repo: "mig-docker",
    supervisorName: "sup-mig",
  });
});

after(async () => {
  await stack?.close();
  await new Promise((resolve) => ledger?.close(resolve));
});

describe("the migration gate in a docker release", () => {
  let app = "";
  let digestA = "";

  it("runs the migration once in the pinned image before fan_out, unprivileged, with the app's env", async () => {
    const sha = await stack.repo.commit(
      {
        Dockerfile: DOCKERFILE,
        "tabbify.toml": TOML,
        "www/index.html": "A\n",
        "migrate.sh": migrateScript(ledgerPort, "a", 0),
      },
      "A",
    );
    const done = await stack.deploy(sha);
    assert.equal(done.success, true, `${JSON.stringify(done)}\n${stack.supervisor.log.slice(-3000)}`);
    app = done.app_uuid;
    digestA = done.digest;
    assert.equal((await httpGet(new URL(stack.node.url).host, `/app/${app}/`, 10_000)).body, "A\n");

    const { json } = await stack.api<{ releases: { id: string; digest: string }[] }>(
      "GET",
      `/api/v1/apps/${app}/releases`,
    );
    const release = json.releases.find((r) => r.digest === digestA);
    assert.ok(release, JSON.stringify(json));
    assert.equal(ran.length, 1, `exactly once: ${JSON.stringify(ran)}`);
    const [run] = ran as [Ran];
    assert.equal(run.label, "a");
    assert.equal(run.release, release.id, "as the release it was about to become (TABBIFY_RELEASE)");
    assert.notEqual(run.uid, "0", "not as root");
    assert.match(run.uid, /^\d+$/);
    assert.equal(run.cap, "0000000000000000", "no capabilities at all");
    assert.equal(run.greeting, "hello-from-the-app-env", "with the app's env");

    const seen = await events(done.deploy_id);
    const migrated = seen.find((e) => e.step === "migrate" && e.type === "step_finished");
    const fanOut = seen.find((e) => e.step === "fan_out" && e.type === "step_started");
    assert.ok(migrated && fanOut && migrated.seq < fanOut.seq, "migrate finished before fan_out began");
    assert.ok(
      seen.some((e) => e.step === "migrate" && e.type === "log" && e.message === `migrating a as ${run.uid}`),
    );
    assert.ok(!seen.some((e) => e.message === "ledger unreachable"));
    assert.deepEqual(migrationContainers(app), [], "the migration's container is gone");

    const rows = await migrationRows(done.deploy_id);
    assert.deepEqual(
      rows.map((r) => r.action),
      ["deploy.migrate.started", "deploy.migrate.finished"],
    );
    const finished = rows[1]!.after as Record<string, unknown>;
    assert.equal(finished.digest, digestA);
    assert.equal(finished.release, release.id);
    assert.equal(finished.outcome, "passed");
    assert.equal(finished.exit_code, 0);
    assert.equal(typeof finished.duration_ms, "number");
  });

  it("a failing migration fails the deploy at migrate, secrets redacted, and the old release keeps serving", async () => {
    assert.ok(app, "the first test ran");
    const set = await stack.api("POST", `/api/v1/apps/${app}/env`, { set: { DATABASE_URL: SECRET } });
    assert.equal(set.status, 200, JSON.stringify(set.json));
    const sha = await stack.repo.commit(
      { "www/index.html": "B\n", "migrate.sh": migrateScript(ledgerPort, "b", 5) },
      "B",
    );
    const host = new URL(stack.node.url).host;
    const answers: { status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        answers.push(
          await httpGet(host, `/app/${app}/`, 10_000).catch((err: Error) => ({
            status: 0,
            body: err.message,
          })),
        );
      }
    })();
    let done: Awaited<ReturnType<BuildStack["deploy"]>>;
    try {
      done = await stack.deploy(sha);
      await sleep(300);
    } finally {
      polling = false;
      await poller;
    }
    assert.equal(done.state, "failed", JSON.stringify(done));
    assert.equal(done.error?.step, "migrate");
    assert.equal(done.error?.code, "MIGRATION_FAILED");
    assert.ok(answers.length > 0);
    const failures = answers.filter((a) => a.status !== 200 || a.body !== "A\n");
    assert.deepEqual(failures, [], `every answer came from the old release (${answers.length} requests)`);
    const described = await stack.supervisor.call("GET", `/v1/apps/${app}`);
    assert.equal(String(described.json.version).split("@").at(-1), digestA, "the runner still runs A");
    assert.deepEqual(
      ran.map((r) => r.label),
      ["a", "b"],
      "b's migration ran, once",
    );

    const seen = await events(done.deploy_id);
    const tail = seen.filter((e) => e.step === "migrate" && e.type === "log").map((e) => e.message);
    assert.ok(
      tail.includes("db=[redacted]"),
      `the app's secret is cut out of the tail: ${JSON.stringify(tail)}`,
    );
    assert.ok(tail.includes("migration b broke: exit 5"), JSON.stringify(tail));
    assert.ok(!seen.some((e) => e.step === "fan_out"), "no target was asked to switch");
    assert.ok(!JSON.stringify(seen).includes("s3cr3t"), "the secret is in no event");
    assert.ok(!stack.supervisor.log.includes("s3cr3t"), "nor in the supervisor's log");
    assert.deepEqual(migrationContainers(app), [], "the failed migration's container is gone too");
    const rows = await migrationRows(done.deploy_id);
    const finished = rows.find((r) => r.action === "deploy.migrate.finished")?.after as Record<
      string,
      unknown
    >;
    assert.equal(finished?.outcome, "failed");
    assert.equal(finished?.exit_code, 5);
    assert.ok(!JSON.stringify(rows).includes("s3cr3t"));
  });
});
