import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sleep } from "../core/sleep.js";
import { processAlive, runnerEnv, runnerEnvNames, stopGroup, tailLog } from "./spawn.js";

const dir = mkdtempSync(join(tmpdir(), "spawn-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("tailLog returns the end of the log, or nothing when there is none", async () => {
  const log = join(dir, "b.log");
  writeFileSync(log, `${"early\n".repeat(2000)}the last line\n`);
  const tail = await tailLog(log, 64);
  assert.equal(tail.length, 64);
  assert.ok(tail.endsWith("the last line\n"));
  assert.equal(await tailLog(join(dir, "none.log")), "");
});

test("stopGroup ends a whole process group; processAlive sees it go", async () => {
  const child = spawn("sh", ["-c", "sleep 30 & sleep 30"], { detached: true, stdio: "ignore" });
  await new Promise((r) => child.once("spawn", r));
  const pid = child.pid!;
  assert.equal(await processAlive(pid), true);
  const exited = new Promise((r) => child.once("exit", r));
  await stopGroup(pid, 1000);
  await exited;
  assert.equal(await processAlive(pid), false);
  // The backgrounded sleep was in the same group; once killed, init reaps it (not instantly).
  const groupGone = () => {
    try {
      process.kill(-pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  const deadline = Date.now() + 3000;
  while (!groupGone() && Date.now() < deadline) await sleep(20);
  assert.ok(groupGone());
});

test("runnerEnv passes only the allowlisted names: no platform secret reaches a runner", () => {
  const env = runnerEnv({
    PATH: "/usr/bin",
    HOME: "/root",
    DOCKER_HOST: "unix:///run/docker.sock",
    TABBIFY_NODE_KEY: "node-key",
    GITHUB_WEBHOOK_SECRET: "hook",
    GITHUB_APP_PRIVATE_KEY: "-----BEGIN",
    FORGEJO_TOKEN: "forgejo",
    AWS_SECRET_ACCESS_KEY: "aws",
    SUPERVISOR_API_KEY: "sup",
    NODE_OPTIONS: "--require /tmp/evil.js",
    LD_PRELOAD: "/tmp/evil.so",
  });
  assert.deepEqual(env, { PATH: "/usr/bin", HOME: "/root", DOCKER_HOST: "unix:///run/docker.sock" });
  for (const name of Object.keys(env)) assert.ok(runnerEnvNames.includes(name));
});
