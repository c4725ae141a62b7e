/**
 * `tabbify up` as the README tells a newcomer to use it: start the stack, push the example app
 * with tcli, start it by uuid, reach it through the node; stop `up` (the app keeps serving),
 * start `up` again (the app is re-adopted, not restarted).
 */
import assert from "node:assert/strict";
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { repoRoot, run, tempDir } from "./support/tools.js";
import { freeUpPorts, spawnUp, supervisorAuth, type UpPorts } from "./support/up-stack.js";

describe("tabbify up", () => {
  let data: { path: string; remove(): Promise<void> };
  let ports: UpPorts;
  let appUuid = "";
  const tcli = join(repoRoot, "dist", "src", "main", "tcli.js");

  before(async () => {
    data = await tempDir("tabbify-up");
    ports = await freeUpPorts();
  });

  after(async () => {
    if (appUuid) {
      // Runners are detached by design; purge the app so the test leaves nothing running.
      const again = spawnUp(data.path, ports);
      try {
        await again.waitForLine(/Tabbify is up/, 60_000);
        await fetch(`http://127.0.0.1:${ports.supervisor}/v1/apps/${appUuid}/purge`, {
          method: "POST",
          headers: await supervisorAuth(data.path),
        });
      } finally {
        await again.stop(15_000);
      }
    }
    await data.remove();
  });

  it("starts every role, runs a pushed app, and keeps it across a restart of up", async () => {
    const up = spawnUp(data.path, ports);
    let firstWorkloadPid: number | undefined;
    try {
      await up.waitForLine(/Tabbify is up/, 60_000);
      const printed = up.output();
      for (const port of Object.values(ports)) assert.match(printed, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(printed, /docker login 127\.0\.0\.1:\d+ -u x -p "\$TOKEN"/);

      // The registry is gated: anonymous /v2/ is challenged, a tenant token from the printed
      // command is exchanged for a registry token.
      const anonymous = await fetch(`http://127.0.0.1:${ports.registry}/v2/`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
      const issued = await run(process.execPath, [
        join(repoRoot, "dist", "src", "main", "tabbify.js"),
        "auth",
        "token",
        "--tenant",
        "dev",
        "--subject",
        "newcomer",
        "--data",
        join(data.path, "auth"),
      ]);
      const jwt = issued.stdout.trim().split("\n").pop()!;
      const exchanged = await fetch(
        `http://127.0.0.1:${ports.registry}/auth/token?service=tabbify-registry`,
        {
          headers: { authorization: `Basic ${Buffer.from(`x:${jwt}`).toString("base64")}` },
        },
      );
      assert.equal(exchanged.status, 200);
      const { token } = (await exchanged.json()) as { token: string };
      const catalogless = await fetch(`http://127.0.0.1:${ports.registry}/v2/`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(catalogless.status, 200);

      // tcli push → start by uuid → answer through the node's /app/<uuid>.
      const app = join(data.path, "hello-node");
      await cp(join(repoRoot, "examples", "hello-node"), app, { recursive: true });
      await run(process.execPath, [
        tcli,
        "push",
        app,
        "--store",
        "local",
        "--store-dir",
        join(data.path, "artifacts"),
      ]);
      appUuid = /app_id = "([0-9a-f-]+)"/.exec(await readFile(join(app, "tabbify.lock"), "utf8"))![1]!;
      // The supervisor runs nothing for a caller without its key; the printed command has it.
      const startUrl = `http://127.0.0.1:${ports.supervisor}/v1/apps/${appUuid}/start`;
      const keyless = await fetch(startUrl, { method: "POST" });
      assert.equal(keyless.status, 401);
      assert.match(printed, /curl -X POST -H "Authorization: Bearer \$\(cat [^)]*supervisor\/api\.key\)"/);
      const started = await fetch(startUrl, { method: "POST", headers: await supervisorAuth(data.path) });
      assert.equal(started.status, 200, await started.clone().text());
      firstWorkloadPid = ((await started.json()) as { workload_pid: number }).workload_pid;
      const answer = await fetch(`http://127.0.0.1:${ports.node}/app/${appUuid}/`);
      assert.equal(answer.status, 200);
      assert.match(await answer.text(), /hello from hello-node/);

      const key = (await readFile(join(data.path, "node.key"), "utf8")).trim();
      const topology = await fetch(`http://127.0.0.1:${ports.node}/v1/topology`, {
        headers: { authorization: `Bearer ${key}` },
      });
      assert.equal(topology.status, 200);
      assert.ok(JSON.stringify(await topology.json()).includes(appUuid));
    } finally {
      up.child.kill("SIGINT");
      assert.equal(await up.exited, 0, up.output());
    }

    // up is gone; the detached runner still serves on the app's own address.
    const status = await run(process.execPath, [
      join(repoRoot, "dist", "src", "main", "tabbify.js"),
      "address",
      appUuid,
    ]);
    const loopback = /(127\.\d+\.\d+\.\d+)/.exec(status.stdout)![1]!;
    const direct = await fetch(`http://${loopback}:8730/`);
    assert.equal(direct.status, 200);

    const again = spawnUp(data.path, ports);
    try {
      await again.waitForLine(/Tabbify is up/, 60_000);
      const row = await fetch(`http://127.0.0.1:${ports.supervisor}/v1/apps/${appUuid}`, {
        headers: await supervisorAuth(data.path),
      });
      const body = (await row.json()) as { state: string; workload_pid: number };
      assert.equal(body.state, "running");
      assert.equal(body.workload_pid, firstWorkloadPid, "re-adopted, not restarted");
      const answer = await fetch(`http://127.0.0.1:${ports.node}/app/${appUuid}/`);
      assert.equal(answer.status, 200);
    } finally {
      await again.stop(15_000);
    }
  });
});
