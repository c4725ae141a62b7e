/**
 * `tabbify up` survives a role's crash: with a request loop running through the node to an app,
 * the supervisor is killed with -9 twice. `up` restarts it with backoff and says so, the node and
 * the others keep serving (same pids), and the loop loses at most the requests in flight at each
 * kill. Stopping `up` still stops every role.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { alive, childrenOf, until } from "./runtime-plane-support.js";
import { type RunningProcess, sleep, tempDir } from "./support/tools.js";
import { freeUpPorts, pushHelloNode, spawnUp, supervisorAuth } from "./support/up-stack.js";

/** Concurrent request loops: at most this many requests are in flight at any moment. */
const LOOPS = 4;

function rolePids(upPid: number): Map<string, number> {
  const roles = new Map<string, number>();
  for (const child of childrenOf(upPid)) {
    const entry = child.args.findIndex((a) => a.endsWith("tabbify.js"));
    const role = child.args[entry + 1];
    if (role) roles.set(role, child.pid);
  }
  return roles;
}

describe("tabbify up keeps serving through a supervisor crash", () => {
  let data: { path: string; remove(): Promise<void> };
  let up: RunningProcess | undefined;
  let supervisorUrl = "";
  let auth: Record<string, string> = {};
  let appUuid = "";

  before(async () => {
    data = await tempDir("tbf-up-crash");
  });

  after(async () => {
    if (up && appUuid) {
      await fetch(`${supervisorUrl}/v1/apps/${appUuid}/purge`, { method: "POST", headers: auth }).catch(
        () => {},
      );
    }
    await up?.stop(15_000);
    await data.remove();
  });

  it("restarts a killed supervisor with backoff; a request loop through the node loses at most what is in flight", async (t) => {
    const ports = await freeUpPorts();
    supervisorUrl = `http://127.0.0.1:${ports.supervisor}`;
    up = spawnUp(data.path, ports);
    await up.waitForLine(/Tabbify is up/, 90_000);
    auth = await supervisorAuth(data.path);

    appUuid = await pushHelloNode(data.path);
    const started = await fetch(`${supervisorUrl}/v1/apps/${appUuid}/start`, {
      method: "POST",
      headers: auth,
    });
    assert.equal(started.status, 200, await started.clone().text());

    const before = rolePids(up.child.pid!);
    assert.deepEqual([...before.keys()].sort(), ["auth", "node", "registry", "supervisor"]);

    let running = true;
    const counts = { ok: 0, failed: 0 };
    const failures: string[] = [];
    const loop = async () => {
      while (running) {
        try {
          const res = await fetch(`http://127.0.0.1:${ports.node}/app/${appUuid}/`, {
            signal: AbortSignal.timeout(10_000),
          });
          const text = await res.text();
          if (res.status === 200 && text.includes("hello from hello-node")) counts.ok += 1;
          else {
            counts.failed += 1;
            failures.push(`HTTP ${res.status}`);
          }
        } catch (err) {
          counts.failed += 1;
          failures.push((err as Error).message);
        }
      }
    };
    const loops = Array.from({ length: LOOPS }, loop);

    const supervisorPids = [before.get("supervisor")!];
    for (let kill = 1; kill <= 2; kill++) {
      await sleep(1_000);
      const victim = supervisorPids.at(-1)!;
      const killedAt = Date.now();
      process.kill(victim, "SIGKILL");
      await until("the supervisor killed", async () => (alive(victim) ? undefined : true));
      // Back: a new supervisor process answers its API (with the key) and still knows the app.
      const back = await until(
        `the supervisor restarted after kill ${kill}`,
        async () => {
          const pid = rolePids(up!.child.pid!).get("supervisor");
          if (pid === undefined || supervisorPids.includes(pid)) return undefined;
          const res = await fetch(`${supervisorUrl}/v1/apps/${appUuid}`, { headers: auth });
          const row = (await res.json()) as { state?: string };
          return res.status === 200 && row.state === "running" ? pid : undefined;
        },
        60_000,
      );
      supervisorPids.push(back);
      t.diagnostic(`kill ${kill}: the supervisor answered again ${Date.now() - killedAt} ms after SIGKILL`);
    }
    await sleep(1_000);
    running = false;
    await Promise.all(loops);

    t.diagnostic(
      `requests through the node: ${counts.ok} ok, ${counts.failed} failed, across 2 supervisor kills`,
    );
    assert.ok(counts.ok > 50, `the loop ran (${counts.ok} ok)`);
    assert.ok(
      counts.failed <= 2 * LOOPS,
      `lost ${counts.failed} (> in flight): ${failures.slice(0, 5).join("; ")}`,
    );

    const output = up.output();
    assert.equal(output.match(/supervisor exited \(SIGKILL\); restarting in \d+\.\d s/g)?.length, 2, output);
    assert.match(output, /supervisor is back/);
    const afterKills = rolePids(up.child.pid!);
    for (const role of ["auth", "registry", "node"]) {
      assert.equal(afterKills.get(role), before.get(role), `${role} kept running`);
    }

    // Stopping `up` still stops every role (runners are detached by design: purge the app first).
    const purged = await fetch(`${supervisorUrl}/v1/apps/${appUuid}/purge`, {
      method: "POST",
      headers: auth,
    });
    assert.equal(purged.status, 200);
    appUuid = "";
    up.child.kill("SIGINT");
    assert.equal(await up.exited, 0, output);
    for (const [role, pid] of afterKills)
      assert.equal(alive(pid), false, `${role} still runs after up stopped`);
    up = undefined;
  });
});
