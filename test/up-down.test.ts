/**
 * First-run paper cuts around `tabbify up`, as a newcomer meets them: a second `up` fails in one
 * line naming the port and the `up` that holds it; the README's `curl -d '{…}'` (a form content
 * type) is taken as JSON by the supervisor and the node; `tabbify auth token` works without
 * --subject ($USER unset); `tabbify down` leaves no process of the data dir running.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { repoRoot, run, tempDir } from "./support/tools.js";
import { freeUpPorts, pushHelloNode, spawnUp, supervisorAuth, type UpPorts } from "./support/up-stack.js";

const tabbify = join(repoRoot, "dist", "src", "main", "tabbify.js");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("tabbify up's paper cuts and tabbify down", () => {
  let data: { path: string; remove(): Promise<void> };
  let ports: UpPorts;
  let up: ReturnType<typeof spawnUp>;

  before(async () => {
    data = await tempDir("tabbify-down");
    ports = await freeUpPorts();
    up = spawnUp(data.path, ports);
    await up.waitForLine(/Tabbify is up/, 90_000);
  });
  after(async () => {
    await up?.stop(15_000);
    // Whatever the test left: down again (idempotent) so no runner outlives it.
    await run(process.execPath, [tabbify, "down", "--data", data.path]).catch(() => {});
    await data?.remove();
  });

  it("a second up fails in one line naming the port and the up holding it", async () => {
    const second = spawnUp(data.path, ports);
    const code = await second.exited;
    assert.equal(code, 1);
    const out = second.output();
    assert.match(
      out,
      new RegExp(
        `port ${ports.node} \\(--node-port\\) on 127\\.0\\.0\\.1 is in use; tabbify up \\(pid ${up.child.pid}`,
      ),
    );
    assert.doesNotMatch(out, /Tabbify is up|EADDRINUSE| {4}at /);
  });

  it("takes curl's form-typed JSON bodies, and issues a token without --subject", async () => {
    const uuid = await pushHelloNode(data.path);
    const started = await fetch(`http://127.0.0.1:${ports.supervisor}/v1/apps/${uuid}/start`, {
      method: "POST",
      headers: { ...(await supervisorAuth(data.path)), "content-type": "application/x-www-form-urlencoded" },
      body: '{"refresh": true}',
    });
    assert.equal(started.status, 200, await started.clone().text());
    const key = (await readFile(join(data.path, "node.key"), "utf8")).trim();
    const deploy = await fetch(`http://127.0.0.1:${ports.node}/v1/deploy`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/x-www-form-urlencoded" },
      body: '{"repo_url": 42}',
    });
    assert.equal(deploy.status, 400, "read as JSON: a bad field, not a 415");
    assert.notEqual(((await deploy.json()) as { code: string }).code, "UNSUPPORTED_MEDIA_TYPE");
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "USER"));
    const token = await run(
      process.execPath,
      [tabbify, "auth", "token", "--tenant", "dev", "--data", join(data.path, "auth")],
      {
        env,
      },
    );
    assert.match(token.stderr, /token for tenant dev, subject \S+/);
  });

  it("down stops the apps, their runners and workloads, then up itself", async () => {
    const runnersDir = join(data.path, "supervisor", "runners");
    const { readdir } = await import("node:fs/promises");
    const records = (await readdir(runnersDir)).filter((n) => n.endsWith(".json"));
    assert.ok(records.length > 0, "an app runs");
    const pids: number[] = [];
    for (const name of records) {
      const r = JSON.parse(await readFile(join(runnersDir, name), "utf8")) as {
        pid: number;
        workload_pid: number;
      };
      pids.push(r.pid, r.workload_pid);
    }
    assert.ok(
      pids.every((p) => typeof p === "number" && alive(p)),
      JSON.stringify(pids),
    );
    const down = await run(process.execPath, [tabbify, "down", "--data", data.path], { timeoutMs: 90_000 });
    assert.match(down.stdout, /Tabbify is down: nothing of .* is running/);
    assert.match(down.stderr, /stopped 1 app through the supervisor/);
    assert.equal(await up.exited, 0);
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} is gone`);
    assert.equal(existsSync(join(data.path, "up.json")), false);
    const again = await run(process.execPath, [tabbify, "down", "--data", data.path]);
    assert.match(again.stderr, /no tabbify up is running/);
  });
});
