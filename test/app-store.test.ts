/**
 * Entry point 2 end to end, with real processes: `tcli push` publishes a Node, a WASM and a
 * docker app into the artifact store (a local directory, and a real s3rver); a `tabbify
 * supervisor --app <uuid>` fetches each, runs it on its address, and the node's `/app/<uuid>`
 * lands on it. A second push plus `POST /v1/apps/:uuid/start {"refresh":true}` swaps to the new
 * version on the same address; a supervisor killed with -9 and restarted with the same `--app`
 * adopts its runners untouched. `GET /v1/apps/:uuid` answers from the store for apps with no
 * runner (stopped, 404, 502 when the store is down, 400 for a bad uuid).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, realpath, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { deriveAppUla } from "../src/core/address.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import {
  fastSupervisorArgs,
  httpGet,
  randomUuid,
  SupervisorUnderTest,
  until,
} from "./runtime-plane-support.js";
import {
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  type S3rverHandle,
  startS3rver,
} from "./support/s3rver.js";
import { ensureDockerd, repoRoot, requireCommand, tempDir } from "./support/tools.js";

const tcliEntry = join(repoRoot, "dist", "src", "main", "tcli.js");
const NODE_KEY = "app-store-test-node-key";
const BUCKET = "tabbify-apps";

const fastArgs = fastSupervisorArgs(2_0000);

/** The environment without anything that would point tcli or the supervisor elsewhere. */
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_") && !k.startsWith("AWS_")),
);

type AppKind = "node" | "wasm" | "docker";
const examples: Record<AppKind, string> = {
  node: join(repoRoot, "examples", "hello-node"),
  wasm: join(repoRoot, "examples", "hello-wasm"),
  docker: join(repoRoot, "examples", "hello-docker"),
};
const greeting: Record<AppKind, string> = {
  node: "hello from hello-node",
  wasm: "hello from hello-wasm",
  docker: "hello from hello-docker",
};

interface PushedApp {
  kind: AppKind;
  dir: string;
  uuid: string;
}

const cleanups: (() => Promise<void>)[] = [];
const supervisors: SupervisorUnderTest[] = [];
const dockerUuids = new Set<string>();
/** Docker app dirs: a push that failed after building still named its image after the lock's id. */
const dockerDirs = new Set<string>();
let node: RunningNode;
let work: string;
let busybox: string;

before(async () => {
  await ensureDockerd();
  busybox = await realpath(requireCommand("busybox", "busybox-static"));
  const dir = await tempDir("tabbify-app-store");
  cleanups.push(dir.remove);
  work = dir.path;
  node = await startNode({ host: "127.0.0.1", port: 0, nodeKey: NODE_KEY, httpLogLevel: "silent" });
  cleanups.push(() => node.close());
});

after(async () => {
  for (const s of supervisors) await s.cleanup();
  for (const dir of dockerDirs) {
    const lock = await readFile(join(dir, "tabbify.lock"), "utf8").catch(() => "");
    const id = /^app_id = "([0-9a-f-]{36})"$/m.exec(lock)?.[1];
    if (id) dockerUuids.add(id);
  }
  for (const uuid of dockerUuids) {
    const tags = spawnSync(
      "docker",
      ["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", `reference=tbf-img-${uuid}-v*`],
      { encoding: "utf8" },
    )
      .stdout.split("\n")
      .filter(Boolean);
    if (tags.length > 0) spawnSync("docker", ["rmi", "-f", ...tags]);
  }
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

function tcli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--enable-source-maps", tcliEntry, ...args], {
      cwd: work,
      env: { ...cleanEnv, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** `tcli push <dir> --json`, which must succeed; returns the app id and version. */
async function push(
  dir: string,
  storeArgs: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ appId: string; version: number }> {
  const r = await tcli(["push", dir, ...storeArgs, "--json"], { ...env, DOCKER_BUILDKIT: "0" });
  assert.equal(r.code, 0, `tcli push ${dir} failed:\n${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as { appId: string; version: number };
}

/**
 * A copy of an example app in a fresh directory, as it is in the repository: hello-docker's
 * busybox comes from this machine's PATH through `[build] host_programs`, with no copy by hand.
 */
async function copyExample(kind: AppKind, label: string): Promise<string> {
  const dir = join(work, `${label}-${kind}`);
  await cp(examples[kind], dir, { recursive: true });
  if (kind === "docker") {
    assert.ok(busybox, "busybox-static is installed");
    assert.equal(existsSync(join(dir, "busybox")), false, "the example ships no busybox of its own");
    dockerDirs.add(dir);
  }
  return dir;
}

async function setVersion(dir: string, version: string): Promise<void> {
  const path = join(dir, "manifest.toml");
  const text = await readFile(path, "utf8");
  const changed = text.replace(/^VERSION = "\d+"$/m, `VERSION = "${version}"`);
  assert.notEqual(changed, text, "the example manifest sets VERSION in [env]");
  await writeFile(path, changed);
}

/** GET `<node>/app/<uuid>/` until it answers 200 with `expected` in its body. */
async function answersThroughNode(uuid: string, expected: string, timeoutMs = 60_000): Promise<string> {
  return until(
    `${node.url}/app/${uuid}/ to answer "${expected}"`,
    async () => {
      const res = await fetch(`${node.url}/app/${uuid}/`, { signal: AbortSignal.timeout(5_000) });
      const body = await res.text();
      return res.status === 200 && body.includes(expected) ? body : undefined;
    },
    timeoutMs,
  );
}

function newSupervisor(args: string[], env: NodeJS.ProcessEnv): SupervisorUnderTest {
  const s = new SupervisorUnderTest([...fastArgs, "--node", node.url, ...args], "local", {
    ...env,
    TABBIFY_NODE_KEY: NODE_KEY,
  });
  supervisors.push(s);
  return s;
}

interface StoreUnderTest {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Makes the store fail, for the 502 check; undefined when the test cannot. */
  breakStore?: () => Promise<void>;
  /** Writes a raw object into the store, bypassing tcli's validation. */
  writeRaw: (key: string, body: string) => Promise<void>;
}

async function localStore(): Promise<StoreUnderTest> {
  const root = join(work, "local-store");
  return {
    name: "local store",
    args: ["--store", "local", "--store-dir", root],
    env: {},
    writeRaw: async (key, body) => {
      await mkdir(join(root, key, ".."), { recursive: true });
      await writeFile(join(root, key), body);
    },
  };
}

async function s3Store(): Promise<StoreUnderTest> {
  const s3: S3rverHandle = await startS3rver([BUCKET]);
  let stopped = false;
  cleanups.push(async () => {
    if (!stopped) await s3.stop();
  });
  return {
    name: "s3rver",
    args: ["--store", "s3", "--bucket", BUCKET, "--endpoint", s3.endpoint, "--region", "us-east-1"],
    env: s3.credentialsEnv,
    breakStore: async () => {
      stopped = true;
      await s3.stop();
    },
    writeRaw: async (key, body) => {
      const client = new S3Client({
        region: "us-east-1",
        endpoint: s3.endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
      });
      try {
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
      } finally {
        client.destroy();
      }
    },
  };
}

for (const makeStore of [localStore, s3Store]) {
  describe(`supervisor --app with the ${makeStore === localStore ? "local store" : "s3rver"}`, {
    concurrency: false,
  }, () => {
    let store: StoreUnderTest;
    let apps: PushedApp[] = [];
    let sup: SupervisorUnderTest;
    const label = makeStore === localStore ? "local" : "s3";

    test("push a Node, a WASM and a docker app; --app starts each and /app/<uuid> lands on it", async () => {
      store = await makeStore();
      for (const kind of ["node", "wasm", "docker"] as const) {
        const dir = await copyExample(kind, label);
        const pushed = await push(dir, store.args, store.env);
        assert.equal(pushed.version, 1);
        if (kind === "docker") dockerUuids.add(pushed.appId);
        apps.push({ kind, dir, uuid: pushed.appId });
      }
      sup = newSupervisor([...store.args, ...apps.flatMap((a) => ["--app", a.uuid])], store.env);
      for (const a of apps) if (a.kind === "docker") sup.dockerApps.add(a.uuid);
      await sup.start();
      for (const a of apps) {
        const body = await answersThroughNode(a.uuid, `${greeting[a.kind]} v1`);
        assert.match(body, new RegExp(`${greeting[a.kind]} v1`));
        const row = await sup.call("GET", `/v1/apps/${a.uuid}`);
        assert.equal(row.status, 200, JSON.stringify(row.json));
        assert.equal(row.json.present, true);
        assert.equal(row.json.state, "running");
        assert.equal(row.json.artifact_version, "v1");
        assert.equal(row.json.app_ula, deriveAppUla(a.uuid));
      }
      // Only what each runtime needs was fetched into the cache.
      const cached = (kind: AppKind) =>
        join(sup.dataDir, "apps", apps.find((a) => a.kind === kind)!.uuid, "v1");
      assert.ok(existsSync(join(cached("wasm"), "hello.wasm")));
      assert.ok(existsSync(join(cached("docker"), "image.tar.gz")));
      assert.ok(!existsSync(join(cached("docker"), "start.sh")));
      assert.ok(existsSync(join(cached("node"), "server.js")));
    });

    test("push again, refresh: the new version answers on the same address", async () => {
      assert.ok(sup, "the first test started the supervisor");
      for (const a of apps) {
        const before = await sup.call("GET", `/v1/apps/${a.uuid}`);
        await setVersion(a.dir, "2");
        const pushed = await push(a.dir, store.args, store.env);
        assert.equal(pushed.appId, a.uuid, "the lock keeps the app id");
        assert.equal(pushed.version, 2);
        const refreshed = await sup.call("POST", `/v1/apps/${a.uuid}/start`, { refresh: true });
        assert.equal(refreshed.status, 200, JSON.stringify(refreshed.json));
        assert.equal(refreshed.json.swapped, true);
        assert.equal(refreshed.json.artifact_version, "v2");
        assert.equal(refreshed.json.bound_addr, before.json.bound_addr, "same address");
        // The swap is done once start answers: the new version serves at once, directly and via the node.
        const direct = await httpGet(refreshed.json.bound_addr as string);
        assert.match(direct.body, new RegExp(`${greeting[a.kind]} v2`));
        await answersThroughNode(a.uuid, `${greeting[a.kind]} v2`, 10_000);
        const after = await sup.call("GET", `/v1/apps/${a.uuid}`);
        assert.equal(after.json.pid, before.json.pid, "the same runner swapped its workload");
        assert.equal(after.json.artifact_version, "v2");
        // Refreshing again with nothing newer changes nothing.
        const again = await sup.call("POST", `/v1/apps/${a.uuid}/start`, { refresh: true });
        assert.equal(again.json.swapped, false);
        assert.equal(again.json.workload_pid, refreshed.json.workload_pid);
      }
    });

    test("kill -9 and restart with --app: every app is adopted, not restarted", async () => {
      const rows = new Map<string, { pid: unknown; workload_pid: unknown }>();
      for (const a of apps) {
        const row = await sup.call("GET", `/v1/apps/${a.uuid}`);
        rows.set(a.uuid, { pid: row.json.pid, workload_pid: row.json.workload_pid });
      }
      await sup.kill9();
      for (const a of apps) await answersThroughNode(a.uuid, `${greeting[a.kind]} v2`, 10_000);
      const logBefore = sup.log.length;
      await sup.start();
      for (const a of apps) {
        const row = await until(`${a.kind} app re-adopted`, async () => {
          const r = await sup.call("GET", `/v1/apps/${a.uuid}`);
          return r.json.state === "running" ? r : undefined;
        });
        assert.equal(row.json.pid, rows.get(a.uuid)!.pid, `${a.kind}: same runner`);
        assert.equal(row.json.workload_pid, rows.get(a.uuid)!.workload_pid, `${a.kind}: same workload`);
        assert.equal(row.json.artifact_version, "v2");
        await answersThroughNode(a.uuid, `${greeting[a.kind]} v2`, 10_000);
      }
      const restartLog = sup.log.slice(logBefore);
      assert.doesNotMatch(restartLog, /started app from the artifact store/, "nothing was started anew");
      for (const a of apps) assert.match(restartLog, new RegExp(`--app has a runner record.*${a.uuid}`));
    });

    test("GET /v1/apps/:uuid answers from the store: stopped, 404, 400; a bad manifest is 422", async () => {
      const dir = await copyExample("wasm", `${label}-unstarted`);
      const pushed = await push(dir, store.args, store.env);
      const stopped = await sup.call("GET", `/v1/apps/${pushed.appId}`);
      assert.equal(stopped.status, 200, JSON.stringify(stopped.json));
      assert.deepEqual(stopped.json, {
        uuid: pushed.appId,
        present: true,
        state: "stopped",
        app_ula: deriveAppUla(pushed.appId),
        bound_addr: null,
        version: "v1",
        artifact_version: "v1",
      });
      const unknown = randomUuid();
      const missing = await sup.call("GET", `/v1/apps/${unknown}`);
      assert.equal(missing.status, 404);
      assert.equal(missing.json.present, false);
      assert.equal(missing.json.uuid, unknown);
      const startMissing = await sup.call("POST", `/v1/apps/${unknown}/start`);
      assert.equal(startMissing.status, 404);
      const bad = await sup.call("GET", "/v1/apps/not-a-uuid");
      assert.equal(bad.status, 400);

      // A manifest tcli would refuse, put into the store by hand.
      const broken = randomUuid();
      await store.writeRaw(
        `apps/${broken}/v1/manifest.toml`,
        '[app]\nname = "x"\n[lifecycle]\nmode = "sometimes"\n',
      );
      await store.writeRaw(`apps/${broken}/latest`, "1");
      const invalid = await sup.call("POST", `/v1/apps/${broken}/start`);
      assert.equal(invalid.status, 422, JSON.stringify(invalid.json));
      assert.match(String(invalid.json.error), /manifest\.toml:4:\d+: .*mode/);
      // Started by uuid alone and stopped again, it is still there, now from its record.
      const start = await sup.call("POST", `/v1/apps/${pushed.appId}/start`);
      assert.equal(start.status, 200, JSON.stringify(start.json));
      assert.equal(start.json.artifact_version, "v1");
      const stop = await sup.call("POST", `/v1/apps/${pushed.appId}/stop`);
      assert.equal(stop.status, 200);
      const purge = await sup.call("POST", `/v1/apps/${pushed.appId}/purge`);
      assert.equal(purge.status, 200);
      assert.ok(!existsSync(join(sup.dataDir, "apps", pushed.appId)));
    });

    if (makeStore === localStore) {
      test("--app named before its first push: retried until the push lands", async () => {
        const uuid = randomUuid();
        const dir = await copyExample("node", "pinned-early");
        const manifest = await readFile(join(dir, "manifest.toml"), "utf8");
        await writeFile(join(dir, "manifest.toml"), manifest.replace("[app]\n", `[app]\nid = "${uuid}"\n`));
        const early = newSupervisor([...store.args, "--app", uuid], store.env);
        await early.start();
        await until("a logged retry", async () =>
          /could not start --app; retrying/.test(early.log) ? true : undefined,
        );
        await push(dir, store.args, store.env);
        await answersThroughNode(uuid, "hello from hello-node v1", 30_000);
      });
    } else {
      test("the store down: 502 for an app with no runner, running apps keep serving", async () => {
        const dir = await copyExample("node", "s3-down");
        const pushed = await push(dir, store.args, store.env);
        await store.breakStore!();
        const down = await sup.call("GET", `/v1/apps/${pushed.appId}`);
        assert.equal(down.status, 502, JSON.stringify(down.json));
        assert.match(String(down.json.error), /artifact store failed/);
        const startDown = await sup.call("POST", `/v1/apps/${pushed.appId}/start`);
        assert.equal(startDown.status, 502);
        const refreshDown = await sup.call("POST", `/v1/apps/${apps[0]!.uuid}/start`, { refresh: true });
        assert.equal(refreshDown.status, 502);
        for (const a of apps) await answersThroughNode(a.uuid, `${greeting[a.kind]} v2`, 10_000);
        // A running app's row comes from its record, not the store.
        const row = await sup.call("GET", `/v1/apps/${apps[0]!.uuid}`);
        assert.equal(row.status, 200);
        assert.equal(row.json.state, "running");
      });
    }

    after(() => {
      apps = [];
    });
  });
}
