/**
 * `latest` after a failed start (issue 12 §6): `tcli push` with a node records the version as a
 * release and the node starts it on the app's first environment. When that start fails, the old
 * release keeps serving and `latest` goes back to it, so a supervisor that (re)starts the app from
 * the store does not pick the broken version; `--keep-latest` is how the user asks otherwise. A
 * real node, a process supervisor sharing a local artifact store, the compiled tcli.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../src/node/index.js";
import { httpGet, SupervisorUnderTest, sleep } from "./runtime-plane-support.js";
import { runTcli } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const NODE_KEY = "push-latest-e2e-node-key";
const SUPERVISOR_KEY = "push-latest-e2e-supervisor-key";

const MANIFEST = `[app]
name = "latest-app"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.mjs"]

[[environments]]
name = "prod"
targets = ["sup-l"]
`;

const good = (body: string) => `import http from "node:http";
http.createServer((req, res) => res.end(${JSON.stringify(`${body}\n`)}))
  .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;
const broken = `console.error("latest-app cannot start: no database"); process.exit(1);\n`;

interface Pushed {
  appId: string;
  version: number;
  latest: number | null;
  withdrawn?: { environment: string; error: string };
  release: { id: string; rollout: { state: string } };
}

describe("latest after a failed start", () => {
  let root: { path: string; remove(): Promise<void> };
  let node: RunningNode;
  let sup: SupervisorUnderTest;
  let storeDir: string;
  let appDir: string;
  let app = "";
  const home = () => join(root.path, "cli-home");
  const tcli = (args: string[]) =>
    runTcli([...args, "--node", node.url], { home: home(), env: { TABBIFY_TOKEN: NODE_KEY } });
  const push = async (server: string, ...flags: string[]): Promise<{ json: Pushed; text: string }> => {
    await writeFile(join(appDir, "server.mjs"), server);
    const run = await tcli(["push", appDir, "--store", "local", "--store-dir", storeDir, "--json", ...flags]);
    const json = JSON.parse(run.stdout) as Pushed;
    // tcli exits 1 when the node's rollout of the pushed version failed.
    assert.equal(run.code, json.release.rollout.state === "failed" ? 1 : 0, run.stderr);
    return { json, text: run.stdout };
  };
  const latestFile = async () => (await readFile(join(storeDir, "apps", app, "latest"), "utf8")).trim();
  const served = async () => (await httpGet(new URL(node.url).host, `/app/${app}/`, 10_000)).body;

  before(async () => {
    root = await tempDir("tabbify-push-latest");
    storeDir = join(root.path, "store");
    appDir = join(root.path, "app");
    await mkdir(appDir, { recursive: true });
    await mkdir(home(), { recursive: true });
    await writeFile(join(appDir, "manifest.toml"), MANIFEST);
    node = await startNode({
      port: 0,
      dataDir: join(root.path, "node"),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
      deploy: { supervisorKey: SUPERVISOR_KEY },
    });
    sup = new SupervisorUnderTest(
      [
        "--node",
        node.url,
        "--name",
        "sup-l",
        "--store",
        "local",
        "--store-dir",
        storeDir,
        "--runner-health-timeout-ms",
        "4000",
        "--warm-spares",
        "0",
      ],
      "local",
      { TABBIFY_NODE_KEY: NODE_KEY, SUPERVISOR_API_KEY: SUPERVISOR_KEY },
    );
    await sup.start();
    const deadline = Date.now() + 30_000;
    while (!node.coordinator.supervisors().some((s) => s.name === "sup-l")) {
      if (Date.now() > deadline) throw new Error(`sup-l never joined the roster\n${sup.log}`);
      await sleep(100);
    }
  });
  after(async () => {
    await sup?.cleanup();
    await node?.close();
    await root?.remove();
  });

  it("a push whose start fails leaves latest (and what serves) on the version before", async () => {
    const one = (await push(good("one"))).json;
    app = one.appId;
    assert.equal(one.release.rollout.state, "succeeded", JSON.stringify(one));
    assert.equal(await latestFile(), "1");
    assert.equal(await served(), "one\n");

    const two = await push(broken);
    assert.equal(two.json.version, 2);
    assert.equal(two.json.release.rollout.state, "failed", two.text);
    assert.equal(two.json.latest, 1, two.text);
    assert.equal(two.json.withdrawn?.environment, "prod");
    assert.equal(await latestFile(), "1", "latest went back to v1");
    assert.equal(await served(), "one\n", "v1 kept serving");
    assert.equal((await sup.call("GET", `/v1/apps/${app}`)).json.artifact_version, "v1");

    // The text output says so too.
    await writeFile(join(appDir, "server.mjs"), broken);
    const text = await tcli(["push", appDir, "--store", "local", "--store-dir", storeDir]);
    assert.equal(text.code, 1, "a push whose start failed exits 1");
    assert.match(text.stdout, /v3 failed to start in prod .*\n\s+so latest is back on v1/);

    // A supervisor asked to refresh from the store stays on v1: latest does not name v2 or v3.
    const refresh = await sup.call("POST", `/v1/apps/${app}/start`, { refresh: true });
    assert.equal(refresh.status, 200, JSON.stringify(refresh.json));
    assert.equal(refresh.json.artifact_version, "v1");
    assert.equal(await served(), "one\n");

    const status = await tcli(["status", app, "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const shown = JSON.parse(status.stdout) as {
      targets: Array<{ supervisor_says: { artifact_version: string } }>;
      last_deploy: { state: string };
    };
    assert.equal(shown.targets[0]?.supervisor_says.artifact_version, "v1", "status shows v1 running");
    assert.equal(shown.last_deploy.state, "failed", "and the last deploy, failed");
  });

  it("--keep-latest leaves latest on the failed version; the next good push moves past them", async () => {
    assert.ok(app, "the first test ran");
    const kept = (await push(broken, "--keep-latest")).json;
    assert.equal(kept.version, 4);
    assert.equal(kept.release.rollout.state, "failed");
    assert.equal(kept.withdrawn, undefined);
    assert.equal(await latestFile(), "4", "the user asked to keep it");

    const five = (await push(good("five"))).json;
    assert.equal(five.version, 5, "failed versions keep their numbers");
    assert.equal(five.release.rollout.state, "succeeded");
    assert.equal(await latestFile(), "5");
    assert.equal(await served(), "five\n");
  });
});
