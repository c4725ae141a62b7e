/**
 * `tabbify up` and the supervisor key: the key reaches the node and the supervisor only, through a
 * file, never argv or another role's environment; each role gets only the environment it reads,
 * so a GitHub App key given to `up` for the node is not in the registry's, auth's, the
 * supervisor's, a runner's or a workload's `/proc/<pid>/environ`, and an unrelated secret in the
 * shell that started `up` reaches no role.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { childrenOf } from "../runtime-plane-support.js";
import { type RunningProcess, tempDir } from "../support/tools.js";
import { freeUpPorts, pushHelloNode, spawnUp } from "../support/up-stack.js";

const roleNames = ["auth", "registry", "node", "supervisor"] as const;
const UNRELATED = "supervisor-auth-up-unrelated-secret-value";

/** A /proc file with NULs as newlines; "" once the process is gone. */
function procText(pid: number, file: "environ" | "cmdline"): string {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, "utf8").replaceAll("\0", "\n");
  } catch {
    return "";
  }
}

function envNames(pid: number): string[] {
  return procText(pid, "environ")
    .split("\n")
    .filter(Boolean)
    .map((kv) => kv.slice(0, kv.indexOf("=")));
}

/** Every living process whose command line mentions `text` (the up data dir: roles, runners, spares). */
function processesMentioning(text: string): number[] {
  return fs
    .readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => procText(pid, "cmdline").includes(text));
}

describe("tabbify up: the supervisor key and each role's environment", () => {
  let data: { path: string; remove(): Promise<void> };
  let up: RunningProcess;
  let supervisorPort = 0;
  let nodePort = 0;
  let pem = "";
  let appUuid = "";
  let workloadPid = 0;
  const roles = new Map<string, number>();

  before(async () => {
    data = await tempDir("tbf-supauth-up");
    const ports = await freeUpPorts();
    supervisorPort = ports.supervisor;
    nodePort = ports.node;
    pem = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs1", format: "pem" })
      .toString();
    up = spawnUp(data.path, ports, {
      GITHUB_APP_ID: "4242",
      GITHUB_APP_PRIVATE_KEY: pem,
      TBF_UNRELATED_TOKEN: UNRELATED,
    });
    await up.waitForLine(/Tabbify is up/, 90_000);
    for (const child of childrenOf(up.child.pid!)) {
      const entry = child.args.findIndex((a) => a.endsWith("tabbify.js"));
      const role = child.args[entry + 1];
      if (role) roles.set(role, child.pid);
    }
  });

  after(async () => {
    if (appUuid) {
      const key = (await readFile(join(data.path, "supervisor", "api.key"), "utf8")).trim();
      await fetch(`http://127.0.0.1:${supervisorPort}/v1/apps/${appUuid}/purge`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
      }).catch(() => {});
    }
    await up?.stop(15_000);
    await data?.remove();
  });

  it("runs the four roles", () => {
    assert.deepEqual([...roles.keys()].sort(), [...roleNames].sort(), up.output());
  });

  it("gives the GitHub App key to the node only, and an unrelated secret to no role", () => {
    const pemBody = pem.split("\n")[1]!;
    for (const role of roleNames) {
      const pid = roles.get(role)!;
      const environ = procText(pid, "environ");
      assert.ok(environ.length > 0, `${role}'s environ was read`);
      assert.equal(environ.includes(UNRELATED), false, `${role} got TBF_UNRELATED_TOKEN`);
      assert.equal(envNames(pid).includes("TBF_UNRELATED_TOKEN"), false);
      if (role === "node") {
        assert.ok(environ.includes(pemBody), "the node reads GITHUB_APP_PRIVATE_KEY");
      } else {
        assert.equal(environ.includes(pemBody), false, `${role} got the GitHub App key`);
        assert.equal(envNames(pid).includes("GITHUB_APP_PRIVATE_KEY"), false, role);
      }
    }
    for (const role of ["auth", "registry"]) {
      assert.equal(
        envNames(roles.get(role)!).includes("TABBIFY_NODE_KEY"),
        false,
        `${role} got the node key`,
      );
    }
  });

  it("keeps the supervisor key in its 0600 file: in no argv and no role's environment", async () => {
    const keyFile = join(data.path, "supervisor", "api.key");
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    // 0700, or 0711 as root (app uids pass through to their own directories): never listable.
    assert.equal(
      fs.statSync(join(data.path, "supervisor")).mode & 0o066,
      0,
      "supervisor data dir readable by others",
    );
    const supervisorKey = (await readFile(keyFile, "utf8")).trim();
    const nodeKey = (await readFile(join(data.path, "node.key"), "utf8")).trim();
    assert.notEqual(supervisorKey, nodeKey);

    // Start an app, so a runner and its workload are there to be looked at too.
    appUuid = await pushHelloNode(data.path);
    const started = await fetch(`http://127.0.0.1:${supervisorPort}/v1/apps/${appUuid}/start`, {
      method: "POST",
      headers: { authorization: `Bearer ${supervisorKey}` },
    });
    assert.equal(started.status, 200, await started.clone().text());
    workloadPid = ((await started.json()) as { workload_pid: number }).workload_pid;
    const through = await fetch(`http://127.0.0.1:${nodePort}/app/${appUuid}/`);
    assert.equal(through.status, 200);

    const pids = new Set([...roles.values(), ...processesMentioning(data.path), workloadPid]);
    assert.ok(pids.size >= 6, `roles, a runner and a workload at least: ${[...pids].join(" ")}`);
    for (const pid of pids) {
      const cmdline = procText(pid, "cmdline");
      assert.equal(cmdline.includes(supervisorKey), false, `the supervisor key is in the argv of ${pid}`);
      assert.equal(cmdline.includes(nodeKey), false, `the node key is in the argv of ${pid}`);
      // `up` itself holds what it was given (what it hands on is the question), the node its secrets.
      if (pid === roles.get("node") || pid === up.child.pid) continue;
      const environ = procText(pid, "environ");
      assert.equal(
        environ.includes(supervisorKey),
        false,
        `the supervisor key is in the environment of ${pid}`,
      );
      assert.equal(
        environ.includes(pem.split("\n")[1]!),
        false,
        `the GitHub App key is in the environment of ${pid}`,
      );
      assert.equal(environ.includes(UNRELATED), false, `an unrelated secret is in the environment of ${pid}`);
    }
    // The node holds the path to the key, not the key.
    const nodeEnv = procText(roles.get("node")!, "environ");
    assert.equal(nodeEnv.includes(supervisorKey), false);
    assert.match(procText(roles.get("node")!, "cmdline"), /--supervisor-key-file\n.*supervisor\/api\.key/);
  });
});
