/**
 * Attacks from inside a workload, against a real `tabbify supervisor` run as root with platform
 * secrets in its environment: a process workload tries to read the supervisor's data dir, a key
 * file kept there, the runner records and logs, the artifact cache, another app's directory and
 * /proc entries, and dumps its parent's and its own environment. Every read must fail with EACCES
 * (or EPERM for signals), every secret must be absent, and the app must still reach its own
 * directory. A wasm workload must run as its app's uid too.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  fastSupervisorArgs,
  httpGet,
  randomUuid,
  repoRoot,
  SupervisorUnderTest,
  tabbifyEntry,
} from "../runtime-plane-support.js";

const probeApp = `import fs from "node:fs";
import http from "node:http";
const targets = JSON.parse(process.env.PROBE_TARGETS ?? "{}");
// Something of its own, readable by anyone who could reach it: only the directory guards it.
fs.writeFileSync(process.env.HOME + "/note.txt", "private to " + process.env.APP_NAME, { mode: 0o644 });
const attempt = (fn) => {
  try {
    fn();
    return "ok";
  } catch (err) {
    return err.code ?? String(err);
  }
};
http
  .createServer((req, res) => {
    const url = new URL(req.url, "http://app");
    if (url.pathname !== "/probe") return res.end("ok");
    const results = {};
    for (const [name, t] of Object.entries(targets)) {
      results[name] = attempt(() => (t.op === "list" ? fs.readdirSync(t.path) : fs.readFileSync(t.path)));
    }
    const other = Number(url.searchParams.get("other_pid"));
    if (other) {
      results.other_environ = attempt(() => fs.readFileSync("/proc/" + other + "/environ"));
      results.other_signal = attempt(() => process.kill(other, 0));
    }
    results.own_note = attempt(() => fs.readFileSync(process.env.HOME + "/note.txt"));
    let parentEnv;
    try {
      parentEnv = fs.readFileSync("/proc/" + process.ppid + "/environ", "utf8");
    } catch (err) {
      parentEnv = err.code;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({
      uid: process.getuid(),
      gid: process.getgid(),
      groups: process.getgroups(),
      home: process.env.HOME,
      env: process.env,
      parent_env: parentEnv,
      results,
    }));
  })
  .listen(Number(process.env.PORT), process.env.HOST);
`;

/** Platform secrets set on the supervisor; none may reach a runner or a workload. */
const secrets: Record<string, string> = {
  TABBIFY_NODE_KEY: `node-key-${randomUuid()}`,
  GITHUB_WEBHOOK_SECRET: `webhook-${randomUuid()}`,
  GITHUB_APP_PRIVATE_KEY: `-----BEGIN RSA PRIVATE KEY-----${randomUuid()}`,
  FORGEJO_TOKEN: `forgejo-${randomUuid()}`,
  FORGEJO_WEBHOOK_SECRET: `forgejo-hook-${randomUuid()}`,
  AWS_SECRET_ACCESS_KEY: `aws-${randomUuid()}`,
  SUPERVISOR_API_KEY: `sup-key-${randomUuid()}`,
  REGISTRY_AUTH_SECRET: `registry-${randomUuid()}`,
};

const sources = mkdtempSync(join(tmpdir(), "tbf-probe-app-"));
writeFileSync(join(sources, "probe.mjs"), probeApp, { mode: 0o600 });
const supervisors: SupervisorUnderTest[] = [];
after(async () => {
  for (const s of supervisors) await s.cleanup();
  rmSync(sources, { recursive: true, force: true });
});

function statusIds(pid: number, field: "Uid" | "Gid"): number[] {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  assert.ok(line, `no ${field} line for pid ${pid}`);
  return line.split(/\s+/).slice(1, 5).map(Number);
}

describe("workload isolation (supervisor as root)", { concurrency: false }, () => {
  test("a process workload reaches no platform file, key, record, other app or secret", async () => {
    assert.equal(process.getuid?.(), 0, "this attack suite needs root: the supervisor must run as root");
    const sup = new SupervisorUnderTest(fastSupervisorArgs(10_000), "local", secrets);
    supervisors.push(sup);
    await sup.start();
    const data = sup.dataDir;
    // Where `tabbify up` keeps the node key: beside the roles' data, 0600 root.
    writeFileSync(join(data, "node.key"), `${secrets.TABBIFY_NODE_KEY}\n`, { mode: 0o600 });

    const victim = randomUuid();
    const attacker = randomUuid();
    const victimSecret = `victim-secret-${randomUuid()}`;
    const startProbe = (uuid: string, name: string, env: Record<string, string>) =>
      sup.call("POST", `/v1/apps/${uuid}/start`, {
        runtime: "process",
        artifact_dir: sources,
        command: ["node", "probe.mjs"],
        env: { APP_NAME: name, ...env },
      });
    const v = await startProbe(victim, "victim", { VICTIM_SECRET: victimSecret });
    assert.equal(v.status, 200, JSON.stringify(v.json));
    const targets = {
      data_dir: { op: "list", path: data },
      node_key: { op: "read", path: join(data, "node.key") },
      supervisor_id: { op: "read", path: join(data, "supervisor-id") },
      runners_dir: { op: "list", path: join(data, "runners") },
      own_record: { op: "read", path: join(data, "runners", `${attacker}.json`) },
      victim_record: { op: "read", path: join(data, "runners", `${victim}.json`) },
      victim_log: { op: "read", path: join(data, "runners", `${victim}.log`) },
      artifact_cache: { op: "list", path: join(data, "apps") },
      workloads_root: { op: "list", path: join(data, "workloads") },
      victim_dir: { op: "list", path: join(data, "workloads", victim) },
      victim_note: { op: "read", path: join(data, "workloads", victim, "note.txt") },
      source_dir: { op: "list", path: sources },
    };
    const a = await startProbe(attacker, "attacker", { PROBE_TARGETS: JSON.stringify(targets) });
    assert.equal(a.status, 200, JSON.stringify(a.json));

    const probe = await httpGet(a.json.bound_addr as string, `/probe?other_pid=${v.json.workload_pid}`);
    assert.equal(probe.status, 200, probe.body);
    const seen = JSON.parse(probe.body) as {
      uid: number;
      gid: number;
      groups: number[];
      home: string;
      env: Record<string, string>;
      parent_env: string;
      results: Record<string, string>;
    };

    // Each attempt, named, so a failure says which read got through.
    const expected: Record<string, string> = Object.fromEntries(
      Object.keys(targets).map((name) => [name, "EACCES"]),
    );
    expected.other_environ = "EACCES";
    expected.other_signal = "EPERM";
    expected.own_note = "ok";
    assert.deepEqual(seen.results, expected);

    const records = (uuid: string) =>
      JSON.parse(readFileSync(join(data, "runners", `${uuid}.json`), "utf8")) as { app_uid: number };
    const attackerUid = records(attacker).app_uid;
    const victimUid = records(victim).app_uid;
    assert.ok(attackerUid > 0 && victimUid > 0 && attackerUid !== victimUid, "each app has a uid of its own");
    assert.equal(seen.uid, attackerUid);
    assert.notEqual(seen.gid, 0);
    assert.deepEqual(seen.groups, [seen.gid], "no supplementary groups");
    assert.equal(seen.home, join(data, "workloads", attacker));
    const home = statSync(seen.home);
    assert.equal(home.mode & 0o777, 0o700);
    assert.equal(home.uid, attackerUid);

    // The runner's environment is root's to read, and a workload gets EACCES; what it holds
    // must not be a secret either (a non-root supervisor's workloads could read it).
    assert.equal(seen.parent_env, "EACCES", "the workload read its runner's environment");
    const runnerPid = (await sup.call("GET", `/v1/apps/${attacker}`)).json.pid as number;
    const runnerEnv = readFileSync(`/proc/${runnerPid}/environ`, "utf8");
    const runnerCmdline = readFileSync(`/proc/${runnerPid}/cmdline`, "utf8");
    const workloadEnv = JSON.stringify(seen.env);
    for (const [name, value] of Object.entries(secrets)) {
      assert.ok(!runnerEnv.includes(value), `${name} is in the runner's environment`);
      assert.ok(!runnerEnv.includes(`${name}=`), `${name} is named in the runner's environment`);
      assert.ok(!runnerCmdline.includes(value), `${name} is in the runner's argv`);
      assert.ok(!workloadEnv.includes(value), `${name} reached the workload's environment`);
      assert.ok(!(name in seen.env), `${name} is set in the workload's environment`);
    }
    assert.ok(!workloadEnv.includes(victimSecret), "another app's env reached this workload");
    assert.ok(
      !runnerEnv.includes(victimSecret) && !runnerEnv.includes("APP_NAME"),
      "app env in the runner's",
    );
    assert.deepEqual(
      Object.keys(seen.env)
        .filter((k) => !["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "HOST", "PORT"].includes(k))
        .sort(),
      ["APP_NAME", "PROBE_TARGETS"],
      "the workload gets only its app's env and the basics",
    );

    // Purge takes the app's directory with it.
    assert.equal((await sup.call("POST", `/v1/apps/${victim}/purge`)).status, 200);
    assert.throws(() => statSync(join(data, "workloads", victim)), /ENOENT/);
  });

  test("a wasm workload runs as its app's uid, not root", async () => {
    const sup = new SupervisorUnderTest(fastSupervisorArgs(10_000), "local", secrets);
    supervisors.push(sup);
    await sup.start();
    const uuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "wasm",
      artifact_dir: join(repoRoot, "examples", "hello-wasm"),
      entry: "hello.wasm",
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    const reply = await httpGet(started.json.bound_addr as string, "/");
    assert.equal(reply.status, 200, reply.body);
    const record = JSON.parse(readFileSync(join(sup.dataDir, "runners", `${uuid}.json`), "utf8")) as {
      app_uid: number;
      staged_artifact_dir: string;
    };
    const uids = statusIds(started.json.workload_pid as number, "Uid");
    assert.deepEqual(uids, [record.app_uid, record.app_uid, record.app_uid, record.app_uid]);
    assert.ok(statusIds(started.json.workload_pid as number, "Gid").every((g) => g !== 0));
    assert.ok(record.staged_artifact_dir.startsWith(join(sup.dataDir, "workloads", uuid, "releases")));
    const runnerPid = (await sup.call("GET", `/v1/apps/${uuid}`)).json.pid as number;
    const env = readFileSync(`/proc/${runnerPid}/environ`, "utf8");
    for (const [name, value] of Object.entries(secrets))
      assert.ok(!env.includes(value), `${name} is in the wasm app's runner environment`);
  });
});

test("--app-user naming no user is refused before anything starts", () => {
  const data = mkdtempSync(join(tmpdir(), "tbf-sup-appuser-"));
  try {
    const run = spawnSync(
      process.execPath,
      [
        tabbifyEntry,
        "supervisor",
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--app-user",
        "no-such-user-tbf",
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.notEqual(run.status, 0, run.stdout);
    assert.match(run.stderr + run.stdout, /--app-user no-such-user-tbf: there is no such user/);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});
