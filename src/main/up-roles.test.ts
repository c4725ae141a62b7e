import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import { sleep } from "../core/sleep.js";
import { KeptRole } from "./up-roles.js";

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = probe();
    if (value !== undefined) return value;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("a kept role killed with -9 comes back with a doubling delay; stopped, it stays down", async () => {
  const data = await mkdtemp(join(tmpdir(), "tbf-kept-"));
  const port = await freeLoopbackPort();
  const said: string[] = [];
  const role = new KeptRole(
    {
      name: "auth",
      args: ["auth", "--listen", `127.0.0.1:${port}`, "--data", data],
      env: { PATH: process.env.PATH ?? "" },
      readyUrl: `http://127.0.0.1:${port}/health`,
    },
    { echo: false, say: (line) => said.push(line) },
  );
  try {
    await role.start();
    const first = role.pid!;
    process.kill(first, "SIGKILL");
    const second = await until("the first restart", () =>
      said.some((l) => l.startsWith("auth is back")) ? role.pid : undefined,
    );
    assert.notEqual(second, first);
    assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
    process.kill(second!, "SIGKILL");
    await until("the second restart", () =>
      said.filter((l) => l.startsWith("auth is back")).length === 2 ? true : undefined,
    );
    const exits = said.filter((l) => l.includes("exited"));
    assert.match(exits[0]!, /^auth exited \(SIGKILL\); restarting in 0\.0 s \(restart 1 in a row\)/);
    assert.match(exits[1]!, /^auth exited \(SIGKILL\); restarting in 0\.5 s \(restart 2 in a row\)/);

    const last = role.pid!;
    await role.stop();
    assert.equal(alive(last), false);
    await sleep(1_500);
    assert.equal(role.pid, last, "no restart after stop");
    assert.equal(said.filter((l) => l.includes("exited")).length, 2);
  } finally {
    await role.stop();
    await rm(data, { recursive: true, force: true });
  }
});

test("a role that cannot start fails the start and is not restarted", async () => {
  const said: string[] = [];
  const role = new KeptRole(
    {
      name: "auth",
      args: ["auth", "--listen", "not-an-address"],
      env: { PATH: process.env.PATH ?? "" },
      readyUrl: "http://127.0.0.1:9/health",
    },
    { echo: false, say: (line) => said.push(line) },
  );
  await assert.rejects(role.start(), (err: unknown) => isTabbifyError(err, "ROLE_FAILED"));
  await sleep(1_000);
  assert.deepEqual(said, []);
});
