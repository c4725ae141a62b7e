/**
 * `npm run bench:releases`: promote and rollback latency as medians (issue 11), for an artifact
 * release (`tcli push`, process runtime) and an image release (built by a real builder supervisor,
 * pushed to the real registry, run on dockerd). Each app declares two environments, `test` then
 * `prod`, on one supervisor; two releases land in `test`, then `BENCH_RUNS` (default 5) times each:
 *
 *  - promote: `POST /api/v1/apps/:app/promote {from: test, to: prod, release}` alternating the two
 *    releases, timed from the request until prod answers (through the node) with that release;
 *  - rollback: `POST /api/v1/apps/:app/rollback {env: prod, to}` alternating back and forth, timed
 *    the same way, with a client requesting prod without pause meanwhile: every answer that is not
 *    200 with one of the two releases' bodies is a failed request;
 *  - (artifact only) five rollbacks of prod at once: the wall time beyond the rollouts' own work,
 *    the cost of queueing them in the deploy lock and unlocking one after the other.
 *
 * It prints each run, then median/min/max per kind, with the load average; it never asserts.
 */
import { loadavg } from "node:os";
import { environmentUuid } from "../src/core/address.js";
import { sleep } from "../src/core/sleep.js";
import { httpGet } from "../test/runtime-plane-support.js";
import { startBuildStack } from "../test/support/build-stack.js";
import { busyboxPageDockerfile } from "../test/support/git-repo.js";
import type { NodeApi } from "../test/support/node-api.js";
import { startPushStack } from "../test/support/push-stack.js";

const runs = Number(process.env.BENCH_RUNS ?? 5);
const kinds = (process.env.BENCH_KINDS ?? "artifact,image").split(",").map((k) => k.trim());

interface Subject {
  api: NodeApi;
  nodeHost: string;
  app: string;
  /** The two releases (ids) and the body each answers with. */
  releases: { id: string; body: string }[];
}

interface Timed {
  ms: number;
  requests?: number;
  failed?: number;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

async function untilAnswers(host: string, app: string, body: string, deadlineMs = 120_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const answer = await httpGet(host, `/app/${app}/`, 10_000).catch(() => undefined);
    if (answer?.status === 200 && answer.body === body) return;
    if (Date.now() > deadline) throw new Error(`/app/${app}/ never answered ${JSON.stringify(body)}`);
    await sleep(20);
  }
}

async function timedCall(
  s: Subject,
  path: string,
  body: Record<string, unknown>,
  expect: string,
): Promise<number> {
  const started = performance.now();
  const res = await s.api("POST", path, body);
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(res.json)}`);
  await untilAnswers(s.nodeHost, s.app, expect);
  return performance.now() - started;
}

async function promotes(s: Subject): Promise<Timed[]> {
  const out: Timed[] = [];
  for (let i = 0; i < runs; i++) {
    const release = s.releases[i % 2]!;
    const ms = await timedCall(
      s,
      `/api/v1/apps/${s.app}/promote`,
      { from: "test", to: "prod", release: release.id },
      release.body,
    );
    out.push({ ms });
    console.log(`  promote ${i + 1}: ${Math.round(ms)} ms (load ${load()})`);
  }
  return out;
}

async function rollbacks(s: Subject): Promise<Timed[]> {
  const out: Timed[] = [];
  const bodies = new Set(s.releases.map((r) => r.body));
  for (let i = 0; i < runs; i++) {
    // prod runs the release the last promote left (index runs-1), so start from the other one.
    const release = s.releases[(runs + i) % 2]!;
    let requests = 0;
    let failed = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        requests++;
        const answer = await httpGet(s.nodeHost, `/app/${s.app}/`, 10_000).catch(() => undefined);
        if (answer?.status !== 200 || !bodies.has(answer.body)) failed++;
      }
    })();
    let ms: number;
    try {
      ms = await timedCall(
        s,
        `/api/v1/apps/${s.app}/rollback`,
        { env: "prod", to: release.id },
        release.body,
      );
    } finally {
      polling = false;
      await poller;
    }
    out.push({ ms, requests, failed });
    console.log(
      `  rollback ${i + 1}: ${Math.round(ms)} ms, ${failed} of ${requests} requests failed (load ${load()})`,
    );
  }
  return out;
}

/**
 * Five rollbacks of prod sent at once, `runs` times: the wall time beyond the five rollouts'
 * own work (each one's duration less its time in the queue) is what queueing and unlocking cost.
 */
async function queuedFive(s: Subject): Promise<Timed[]> {
  const out: Timed[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const answers = await Promise.all(
      [0, 1, 2, 3, 4].map((k) =>
        s.api<{ duration_ms: number; queued_ms: number }>("POST", `/api/v1/apps/${s.app}/rollback`, {
          env: "prod",
          to: s.releases[k % 2]!.id,
        }),
      ),
    );
    const wall = performance.now() - started;
    const failed = answers.find((a) => a.status !== 200);
    if (failed)
      throw new Error(`a queued rollback answered ${failed.status}: ${JSON.stringify(failed.json)}`);
    const working = answers.reduce((sum, a) => sum + a.json.duration_ms - a.json.queued_ms, 0);
    out.push({ ms: wall - working });
    console.log(
      `  5 queued rollbacks ${i + 1}: ${Math.round(wall)} ms wall, ${Math.round(working)} ms of rollouts, ${Math.round(wall - working)} ms queueing and unlocking (load ${load()})`,
    );
  }
  return out;
}

function summary(label: string, timed: Timed[]): string {
  const sorted = timed.map((t) => t.ms).sort((a, b) => a - b);
  const median =
    sorted.length % 2 === 1
      ? sorted[(sorted.length - 1) / 2]!
      : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  const requests = timed.reduce((n, t) => n + (t.requests ?? 0), 0);
  const failed = timed.reduce((n, t) => n + (t.failed ?? 0), 0);
  const loop = timed.some((t) => t.requests !== undefined)
    ? `, ${failed} of ${requests} requests failed`
    : "";
  return `${label}: median ${Math.round(median)} ms (min ${Math.round(sorted[0]!)}, max ${Math.round(sorted.at(-1)!)}, n=${sorted.length})${loop}`;
}

const ENVIRONMENTS = (supervisor: string) => `
[[environments]]
name = "test"
targets = ["${supervisor}"]

[[environments]]
name = "prod"
targets = ["${supervisor}"]
`;

async function artifact(): Promise<string[]> {
  const stack = await startPushStack({
    label: "bench-releases-artifact",
    supervisorName: "sup-bench-a",
    manifestToml: `[app]\nname = "bench-artifact"\n\n[lifecycle]\nmode = "always_on"\n\n[runtime]\ntype = "process"\ncommand = ["node", "server.mjs"]\n${ENVIRONMENTS("sup-bench-a")}`,
  });
  try {
    const server = (body: string) =>
      `import http from "node:http";\nhttp.createServer((q, r) => r.end(${JSON.stringify(body)})).listen(Number(process.env.PORT), process.env.HOST);\nprocess.on("SIGTERM", () => process.exit(0));\n`;
    const pushed = [];
    for (const body of ["one\n", "two\n"]) {
      const { appId, release } = await stack.push({ "server.mjs": server(body) });
      if (release.rollout.state !== "succeeded") throw new Error(JSON.stringify(release.rollout));
      pushed.push({ app: appId, id: release.id, body });
    }
    const subject: Subject = {
      api: stack.api,
      nodeHost: new URL(stack.node.url).host,
      app: pushed[0]!.app,
      releases: pushed,
    };
    console.log("artifact release (tcli push, process runtime):");
    return [
      summary("artifact promote", await promotes(subject)),
      summary("artifact rollback", await rollbacks(subject)),
      summary("artifact 5 queued rollbacks, beyond the rollouts", await queuedFive(subject)),
    ];
  } finally {
    await stack.close();
  }
}

async function image(): Promise<string[]> {
  const stack = await startBuildStack({
    label: "bench-releases-image",
    owner: "benchco",
    repo: "bench-image",
    supervisorName: "sup-bench-i",
  });
  try {
    const toml = `[app]\nname = "bench-image"\n${ENVIRONMENTS("sup-bench-i")}`;
    const built = [];
    for (const body of ["A\n", "B\n"]) {
      const sha = await stack.repo.commit({
        Dockerfile: busyboxPageDockerfile(body.trim()),
        "tabbify.toml": toml,
        "www/index.html": body,
      });
      const done = await stack.deploy(sha);
      if (!done.success) throw new Error(`build failed: ${JSON.stringify(done)}`);
      // Its test environment runs under the environment's uuid; prod under the app's.
      stack.supervisor.dockerApps.add(environmentUuid(done.app_uuid, "test"));
      const { json } = await stack.api<{ releases: { id: string; digest: string }[] }>(
        "GET",
        `/api/v1/apps/${done.app_uuid}/releases`,
      );
      const release = json.releases.find((r) => r.digest === done.digest);
      if (!release) throw new Error(`no release of ${done.digest}`);
      built.push({ app: done.app_uuid, id: release.id, body });
    }
    const app = built[0]!.app;
    const subject: Subject = { api: stack.api, nodeHost: new URL(stack.node.url).host, app, releases: built };
    console.log("image release (builder, registry, dockerd):");
    return [
      summary("image promote", await promotes(subject)),
      summary("image rollback", await rollbacks(subject)),
    ];
  } finally {
    await stack.close();
  }
}

const lines: string[] = [`load before: ${load()}`];
for (const kind of kinds) {
  if (kind === "artifact") lines.push(...(await artifact()));
  else if (kind === "image") lines.push(...(await image()));
  else throw new Error(`unknown BENCH_KINDS entry ${kind} (artifact, image)`);
}
lines.push(`load after: ${load()}`);
console.log(`\n${lines.join("\n")}`);
