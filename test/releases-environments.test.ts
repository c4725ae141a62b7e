// Releases across environments with pushed artifacts (issue 11), end to end: a node and two
// process supervisors (`sup-t` runs the test environment, `sup-p` prod) sharing an artifact store
// with `tcli push`. The app declares [probes] and [[environments]] in its manifest.toml. A push
// lands in test only; promote moves that exact release to prod; a release failing its version or
// ready probe never switches test (a request loop sees no failure) and cannot be promoted; five
// concurrent rollouts of one app queue and finish one after the other, the last one's release
// serving at the end.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { environmentUuid } from "../src/core/address.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { httpGet, SupervisorUnderTest, sleep } from "./runtime-plane-support.js";
import { runTcli } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const NODE_KEY = "releases-env-e2e-node-key";
const SUPERVISOR_KEY = "releases-env-e2e-supervisor-key";

const MANIFEST = `[app]
name = "env-app"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.mjs"]

[probes]
healthz = "/healthz"
ready = "/ready"
version = "/version"

[[environments]]
name = "test"
targets = ["sup-t"]

[[environments]]
name = "prod"
targets = ["sup-p"]
`;

/** The app: `/` answers BODY; /version reports the release it was handed unless told to lie. */
function server(body: string, opts: { version?: "stale"; ready?: "failing" } = {}): string {
  return `import http from "node:http";
const release = ${opts.version === "stale" ? '"some-other-release"' : "process.env.TABBIFY_RELEASE ?? ''"};
http.createServer((req, res) => {
  if (req.url === "/healthz") return res.end("ok");
  if (req.url === "/ready") { res.statusCode = ${opts.ready === "failing" ? 503 : 200}; return res.end("ready?"); }
  if (req.url === "/version") return res.end(JSON.stringify({ version: "1", release }));
  res.end(${JSON.stringify(`${body}\n`)});
}).listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;
}

interface Rollout {
  environment: string;
  state: "succeeded" | "failed" | "skipped";
  code?: string;
  error?: string;
  deploy_id?: string;
  queued_ms?: number;
  duration_ms?: number;
}
interface PushedRelease {
  id: string;
  digest: string;
  rollout: Rollout;
}

let root: { path: string; remove(): Promise<void> };
let node: RunningNode;
let supT: SupervisorUnderTest;
let supP: SupervisorUnderTest;
let storeDir: string;
let appDir: string;

async function api<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const headers: Record<string, string> = { authorization: `Bearer ${NODE_KEY}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as T };
}

async function onRoster(name: string): Promise<SupervisorUnderTest> {
  const supervisor = new SupervisorUnderTest(
    [
      "--node",
      node.url,
      "--name",
      name,
      "--store",
      "local",
      "--store-dir",
      storeDir,
      "--runner-health-timeout-ms",
      "10000",
    ],
    "local",
    { TABBIFY_NODE_KEY: NODE_KEY, SUPERVISOR_API_KEY: SUPERVISOR_KEY },
  );
  await supervisor.start();
  const deadline = Date.now() + 20_000;
  while (!node.coordinator.supervisors().some((s) => s.name === name)) {
    if (Date.now() > deadline) throw new Error(`${name} never joined the roster\n${supervisor.log}`);
    await sleep(100);
  }
  return supervisor;
}

/** `tcli push` of the app dir with `server.mjs` as given; with the node's token unless offline. */
async function push(
  source: string,
  online = true,
): Promise<{ appId: string; version: number; release?: PushedRelease }> {
  await writeFile(join(appDir, "server.mjs"), source);
  const run = await runTcli(
    ["push", appDir, "--store", "local", "--store-dir", storeDir, "--json", "--node", node.url],
    { home: join(root.path, "cli-home"), env: online ? { TABBIFY_TOKEN: NODE_KEY } : {} },
  );
  const pushed = JSON.parse(run.stdout) as { appId: string; version: number; release?: PushedRelease };
  // tcli exits 1 when the node's rollout of the pushed version failed.
  assert.equal(run.code, pushed.release?.rollout?.state === "failed" ? 1 : 0, run.stderr);
  return pushed;
}

const viaNode = (uuid: string, path = "/") => httpGet(new URL(node.url).host, `/app/${uuid}${path}`, 10_000);

before(async () => {
  root = await tempDir("tabbify-releases-env");
  storeDir = join(root.path, "store");
  appDir = join(root.path, "app");
  await mkdir(appDir, { recursive: true });
  await mkdir(join(root.path, "cli-home"), { recursive: true });
  await writeFile(join(appDir, "manifest.toml"), MANIFEST);
  node = await startNode({
    port: 0,
    dataDir: join(root.path, "node"),
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: { supervisorKey: SUPERVISOR_KEY },
  });
  supT = await onRoster("sup-t");
  supP = await onRoster("sup-p");
});

after(async () => {
  await supT?.cleanup();
  await supP?.cleanup();
  await node?.close();
  await root?.remove();
});

describe("releases across environments", () => {
  let app = "";
  let testUuid = "";
  let first: PushedRelease;

  it("a push lands in the first environment only; promote runs the same release in prod", async () => {
    const pushed = await push(server("one"));
    app = pushed.appId;
    testUuid = environmentUuid(app, "test");
    first = pushed.release!;
    assert.equal(first.rollout.state, "succeeded", JSON.stringify(first.rollout));
    assert.equal(first.rollout.environment, "test");
    assert.equal((await viaNode(testUuid)).body, "one\n");
    assert.match((await viaNode(testUuid, "/version")).body, new RegExp(first.id));
    const onTest = await supT.call("GET", `/v1/apps/${testUuid}`);
    assert.equal(onTest.json.artifact_version, "v1");
    // (A supervisor describes an app its store holds even when it runs none of it.)
    const running = async (s: SupervisorUnderTest, uuid: string) =>
      (await s.call("GET", `/v1/apps/${uuid}`)).json.state === "running";
    assert.equal(await running(supP, app), false, "prod runs nothing yet");
    assert.equal(await running(supT, app), false, "test's supervisor runs no prod");

    const started = performance.now();
    const promoted = await api<{ release: { id: string; digest: string }; environment: string }>(
      "POST",
      `/api/v1/apps/${app}/promote`,
      { from: "test", to: "prod" },
    );
    assert.equal(promoted.status, 200, JSON.stringify(promoted.json));
    assert.equal(promoted.json.release.id, first.id);
    for (let i = 0; (await viaNode(app).catch(() => undefined))?.body !== "one\n"; i++) {
      assert.ok(i < 100, "prod never answered");
      await sleep(100);
    }
    console.log(`promote latency (request → prod answering): ${Math.round(performance.now() - started)} ms`);
    assert.match((await viaNode(app, "/version")).body, new RegExp(first.id), "prod runs the same release");
    assert.equal((await supP.call("GET", `/v1/apps/${app}`)).json.artifact_version, "v1");
    const listed = await api<{ releases: { id: string; digest: string; environments: string[] }[] }>(
      "GET",
      `/api/v1/apps/${app}/releases`,
    );
    assert.deepEqual(listed.json.releases.find((r) => r.id === first.id)?.environments, ["prod", "test"]);
    assert.equal(listed.json.releases[0]?.digest, first.digest, "the same digest in test and prod");
  });

  it("a release failing its version or ready probe never switches test, and is never promoted", async () => {
    assert.ok(app, "the first test ran");
    const answers: { status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        answers.push(await viaNode(testUuid).catch((err: Error) => ({ status: 0, body: err.message })));
      }
    })();
    const stale = await push(server("two", { version: "stale" }));
    const notReady = await push(server("three", { ready: "failing" }));
    polling = false;
    await poller;
    for (const [pushed, probe] of [
      [stale, "version"],
      [notReady, "ready"],
    ] as const) {
      const rollout = pushed.release!.rollout;
      assert.equal(rollout.state, "failed", JSON.stringify(rollout));
      assert.equal(rollout.code, "ROLLOUT_FAILED");
      assert.match(rollout.error ?? "", new RegExp(`probe ${probe}`));
    }
    const failed = answers.filter((a) => a.status !== 200 || a.body !== "one\n");
    assert.deepEqual(
      failed,
      [],
      `${failed.length} of ${answers.length} requests failed during the failed rollouts`,
    );
    console.log(`failed-probe rollouts: ${answers.length} requests to test, ${failed.length} failed`);
    assert.equal(
      (await supT.call("GET", `/v1/apps/${testUuid}`)).json.artifact_version,
      "v1",
      "test keeps v1",
    );
    const refused = await api<{ code: string; error: string }>("POST", `/api/v1/apps/${app}/promote`, {
      from: "test",
      to: "prod",
      release: stale.release!.id,
    });
    assert.equal(refused.status, 409, JSON.stringify(refused.json));
    assert.equal(refused.json.code, "NOT_VERIFIED_IN");
    assert.equal((await viaNode(app)).body, "one\n", "prod still runs the first release");
  });

  it("five concurrent rollouts of one app queue, run one after the other, and the last one wins", async () => {
    assert.ok(app, "the first test ran");
    const versions: string[] = [];
    for (let i = 0; i < 5; i++) versions.push(`v${(await push(server(`five-${i}`), false)).version}`);
    const body = (i: number) => ({
      version: versions[i],
      manifest_toml: MANIFEST,
      files: [{ path: "server.mjs", digest: `sha256:${(i + 10).toString(16).padStart(64, "0")}` }],
    });
    const started = performance.now();
    const calls: Promise<{ status: number; json: PushedRelease }>[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      calls.push(api<PushedRelease>("POST", `/api/v1/apps/${app}/releases`, body(i)));
      // The next one is sent once this one holds the lock or waits in the queue: a known order.
      for (let tries = 0; ; tries++) {
        const progress = await api<{
          deploy?: { id: string; state: string };
          steps?: { step: string; state: string }[];
        }>("GET", `/api/v1/apps/${app}/progress`);
        const deploy = progress.json.deploy;
        const placed =
          deploy !== undefined &&
          !seen.has(deploy.id) &&
          (deploy.state === "queued" ||
            progress.json.steps?.some((s) => s.step === "acquire_lock" && s.state === "succeeded"));
        if (placed) {
          seen.add(deploy.id);
          break;
        }
        assert.ok(tries < 600, `rollout ${i} never took its place`);
        await sleep(50);
      }
    }
    const done = await Promise.all(calls);
    const wallMs = performance.now() - started;
    for (const [i, d] of done.entries()) {
      assert.equal(d.status, 201, JSON.stringify(d.json));
      assert.equal(d.json.rollout.state, "succeeded", `rollout ${i}: ${JSON.stringify(d.json.rollout)}`);
    }
    assert.ok(
      done.slice(1).every((d) => (d.json.rollout.queued_ms ?? 0) > 0),
      "all but the first queued",
    );
    const finishedAt = await Promise.all(
      done.map(async (d) => {
        const status = await api<{ finished_at: string; state: string }>(
          "GET",
          `/v1/deploy/${d.json.rollout.deploy_id}/status`,
        );
        assert.equal(status.json.state, "succeeded");
        return status.json.finished_at;
      }),
    );
    assert.deepEqual([...finishedAt].sort(), finishedAt, "they finished in the order they were sent");
    const last = done[4]!.json;
    assert.equal((await viaNode(testUuid)).body, "five-4\n", "the final state is the last one's");
    assert.match((await viaNode(testUuid, "/version")).body, new RegExp(last.id));
    assert.equal((await supT.call("GET", `/v1/apps/${testUuid}`)).json.artifact_version, versions[4]);
    const working = done.reduce(
      (sum, d) => sum + (d.json.rollout.duration_ms! - d.json.rollout.queued_ms!),
      0,
    );
    console.log(
      `5 concurrent rollouts: ${Math.round(wallMs)} ms wall, ${working} ms of rollouts, queue and unlock overhead ${Math.round(wallMs - working)} ms`,
    );
  });
});
