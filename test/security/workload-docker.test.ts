/**
 * A docker workload, deployed through a real `tabbify supervisor`, looks at itself from inside:
 * it must run as a uid other than 0 with no effective, permitted or bounding capabilities and
 * no_new_privs set, under the app's memory limit, with no platform secret in its environment.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { fastSupervisorArgs, httpGet, randomUuid, SupervisorUnderTest } from "../runtime-plane-support.js";
import { buildScratchImage } from "../support/tools.js";

const image = "tabbify-test/workload-docker:v1";
// Serves what the kernel says about the container's own processes: the shell's status, and
// the httpd's (the process that answers requests) once it runs.
const startScript = `/bin/busybox mkdir -p /tmp/www
/bin/busybox cat /proc/self/status > /tmp/www/self-status
/bin/busybox env > /tmp/www/env
/bin/busybox touch /probe-root-write 2> /tmp/www/root-write || true
/bin/busybox httpd -f -p "$HOST:$PORT" -h /tmp/www &
pid=$!
/bin/busybox cat /proc/$pid/status > /tmp/www/httpd-status
trap 'kill $pid; wait $pid; exit 0' TERM
wait $pid
`;

const secret = `node-key-${randomUuid()}`;
const sup = new SupervisorUnderTest(fastSupervisorArgs(20_000), "local", {
  TABBIFY_NODE_KEY: secret,
  GITHUB_WEBHOOK_SECRET: secret,
  FORGEJO_TOKEN: secret,
});
after(() => sup.cleanup());

function field(status: string, name: string): string {
  const line = status.split("\n").find((l) => l.startsWith(`${name}:`));
  assert.ok(line, `no ${name} in ${status.slice(0, 200)}`);
  return line.slice(name.length + 1).trim();
}

test("a docker workload runs as a uid other than 0, with no capabilities, no_new_privs and its memory limit", async () => {
  await buildScratchImage(image, { command: ["sh", "/start.sh"], files: { "/start.sh": startScript } });
  await sup.start();
  const uuid = randomUuid();
  sup.dockerApps.add(uuid);
  const deployed = await sup.call("POST", `/v1/apps/${uuid}/deploy`, {
    runtime: "docker",
    ref: image,
    limits: { memory_mb: 64 },
    env: { APP_SETTING: "visible" },
  });
  assert.equal(deployed.status, 200, JSON.stringify(deployed.json));
  const addr = deployed.json.bound_addr as string;

  for (const file of ["self-status", "httpd-status"]) {
    const status = (await httpGet(addr, `/${file}`)).body;
    const uids = field(status, "Uid").split(/\s+/).map(Number);
    const gids = field(status, "Gid").split(/\s+/).map(Number);
    assert.ok(uids.length === 4 && uids.every((u) => u !== 0), `${file}: a uid is root's: ${uids.join(" ")}`);
    assert.ok(
      gids.every((g) => g !== 0),
      `${file}: a gid is root's: ${gids.join(" ")}`,
    );
    for (const caps of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
      assert.equal(BigInt(`0x${field(status, caps)}`), 0n, `${file}: ${caps} is not empty`);
    assert.equal(field(status, "NoNewPrivs"), "1", `${file}: no_new_privs is not set`);
  }
  assert.match((await httpGet(addr, "/root-write")).body, /Permission denied|Read-only/);

  const env = (await httpGet(addr, "/env")).body;
  assert.match(env, /APP_SETTING=visible/);
  assert.ok(!env.includes(secret), "a platform secret reached the container");

  const [container] = execFileSync("docker", ["ps", "-q", "--filter", `label=tabbify.app=${uuid}`], {
    encoding: "utf8",
  })
    .split("\n")
    .filter(Boolean);
  assert.ok(container, "no container for the app");
  const inspected = JSON.parse(
    execFileSync("docker", ["container", "inspect", container], { encoding: "utf8" }),
  )[0] as {
    Config: { User: string };
    HostConfig: { Memory: number; CapDrop: string[] | null; SecurityOpt: string[] | null };
  };
  assert.equal(inspected.HostConfig.Memory, 64 * 1024 * 1024);
  assert.deepEqual(inspected.HostConfig.CapDrop, ["ALL"]);
  assert.ok(inspected.HostConfig.SecurityOpt?.includes("no-new-privileges"));
  // As root the supervisor gives the container the app's own uid, the one its record keeps.
  const record = JSON.parse(readFileSync(join(sup.dataDir, "runners", `${uuid}.json`), "utf8")) as {
    app_uid?: number;
  };
  if (process.getuid?.() === 0) assert.equal(inspected.Config.User.split(":")[0], String(record.app_uid));
  else assert.equal(inspected.Config.User, "65534:65534");
  assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
});
