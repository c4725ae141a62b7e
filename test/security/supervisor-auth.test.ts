/**
 * Attacks on the supervisor's API, which runs any `command` a start names as its own user (root
 * here): without its API key nothing runs and nothing is stopped, listed or purged; a wrong key
 * (the node key included) is refused; an unprivileged local user cannot read the key file; only
 * `/health` stays open.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { randomUuid, SupervisorUnderTest, sleep, versionApp } from "../runtime-plane-support.js";
import { freePort, requireCommand, spawnTabbify, tempDir } from "../support/tools.js";

const NODE_KEY = "supervisor-auth-node-key";
const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/** A start that would leave a file behind if the command ran. */
function shellSpec(marker: string): Record<string, unknown> {
  return {
    runtime: "process",
    artifact_dir: versionApp,
    command: ["sh", "-c", `touch ${marker}; exec node server.mjs`],
  };
}

/** One raw request (no URL normalisation on our side), answering status, headers and body. */
function rawRequest(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("supervisor API authentication", () => {
  let sup: SupervisorUnderTest;
  const markers: string[] = [];
  const marker = () => {
    const path = join(tmpdir(), `tbf-supauth-${randomUuid()}`);
    markers.push(path);
    return path;
  };

  before(async () => {
    requireCommand("setpriv", "util-linux");
    requireCommand("curl", "curl");
    // The node key is in its environment (as under `tabbify up`): it must not open the API.
    sup = new SupervisorUnderTest(["--warm-spares", "0"], "local", { TABBIFY_NODE_KEY: NODE_KEY });
    await sup.start();
  });

  after(async () => {
    await sup?.cleanup();
    for (const path of markers) rmSync(path, { force: true });
  });

  it("creates its key file 0600 on first start, and it is the key the API takes", async () => {
    const fresh = new SupervisorUnderTest(["--warm-spares", "0"]);
    const keyFile = join(fresh.dataDir, "api.key");
    unlinkSync(keyFile);
    try {
      await fresh.start();
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      // 0700, or 0711 as root (app uids pass through to their own directories): never listable.
      assert.equal(statSync(fresh.dataDir).mode & 0o066, 0, "data dir readable by group or others");
      const created = readFileSync(keyFile, "utf8").trim();
      assert.match(created, /^[A-Za-z0-9_-]{43}$/);
      const res = await fetch(`${fresh.base}/v1/apps`, { headers: { authorization: `Bearer ${created}` } });
      assert.equal(res.status, 200);
      assert.match(fresh.log, /API key created/);
      assert.equal(fresh.log.includes(created), false, "the key reached the log");
    } finally {
      await fresh.cleanup();
    }
  });

  it("keeps /health open", async () => {
    const res = await fetch(`${sup.base}/health`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { status: string }).status, "ok");
  });

  it("answers 401 to a start with `sh -c` and no key, and runs nothing", async () => {
    const uuid = randomUuid();
    const touched = marker();
    const res = await fetch(`${sup.base}/v1/apps/${uuid}/start`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(shellSpec(touched)),
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
    const body = (await res.json()) as { code: string; error: string };
    assert.equal(body.code, "SUPERVISOR_AUTH_REQUIRED");
    await sleep(1500);
    assert.equal(existsSync(touched), false, "the command ran");
    const listed = await sup.call("GET", "/v1/apps");
    assert.equal(JSON.stringify(listed.json).includes(uuid), false);
  });

  it("answers 403 to a wrong key and to the node key, and runs nothing", async () => {
    for (const wrong of ["not-the-key", NODE_KEY, `${sup.apiKey}x`, sup.apiKey.slice(0, -1)]) {
      const touched = marker();
      const res = await fetch(`${sup.base}/v1/apps/${randomUuid()}/start`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${wrong}` },
        body: JSON.stringify(shellSpec(touched)),
      });
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as { code: string }).code, "SUPERVISOR_KEY_INVALID");
      await sleep(300);
      assert.equal(existsSync(touched), false, "the command ran");
    }
    // Not a bearer credential at all: as good as none.
    for (const header of [
      `Basic ${Buffer.from(`x:${sup.apiKey}`).toString("base64")}`,
      "Bearer",
      sup.apiKey,
    ]) {
      const res = await rawRequest(sup.port, "GET", "/v1/apps", { authorization: header });
      assert.equal(res.status, 401, header);
    }
  });

  it("refuses stop, purge, reset, deploy, list, describe, about and build without the key", async () => {
    // A real app, so a refusal is not just an unknown uuid.
    const touched = marker();
    const uuid = randomUuid();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, shellSpec(touched));
    assert.equal(started.status, 200, JSON.stringify(started.json));
    assert.equal(existsSync(touched), true, "with the key the same start runs");

    const routes: [string, string, unknown?][] = [
      ["POST", `/v1/apps/${uuid}/stop`],
      ["POST", `/v1/apps/${uuid}/purge`],
      ["POST", `/v1/apps/${uuid}/reset`],
      ["POST", `/v1/apps/${uuid}/deploy`, { runtime: "docker", ref: "127.0.0.1:1/x/y:z" }],
      ["POST", `/v1/apps/${uuid}/start`, { refresh: true }],
      ["GET", "/v1/apps"],
      ["GET", `/v1/apps/${uuid}`],
      ["GET", "/v1/about"],
      ["POST", "/v1/build", { repo_url: "https://example.invalid/x", ref: "main" }],
      ["GET", "/no/such/route"],
    ];
    for (const [method, path, body] of routes) {
      const json = body === undefined ? undefined : JSON.stringify(body);
      const jsonHeaders: Record<string, string> = json ? { "content-type": "application/json" } : {};
      const none = await rawRequest(sup.port, method, path, jsonHeaders, json);
      assert.equal(none.status, 401, `${method} ${path} without a key: ${none.body}`);
      assert.equal((JSON.parse(none.body) as { code: string }).code, "SUPERVISOR_AUTH_REQUIRED");
      const wrong = await rawRequest(
        sup.port,
        method,
        path,
        { ...jsonHeaders, authorization: "Bearer nope" },
        json,
      );
      assert.equal(wrong.status, 403, `${method} ${path} with a wrong key: ${wrong.body}`);
    }
    // Paths that only look like the open one.
    for (const path of [
      "/v1/apps?/health",
      "//v1/apps",
      "/health/../v1/apps",
      "/%68ealth/../v1/apps",
      "/v1/apps#/health",
    ]) {
      const res = await rawRequest(sup.port, "GET", path);
      assert.ok(
        res.status === 401 || res.status === 404 || res.status === 400,
        `${path}: ${res.status} ${res.body}`,
      );
      assert.ok(!res.body.includes(uuid), `${path} listed the app`);
    }

    const after = await sup.call("GET", `/v1/apps/${uuid}`);
    assert.equal(after.status, 200);
    assert.equal(after.json.state, "running", "nothing above stopped or purged the app");
    assert.equal((await sup.call("POST", `/v1/apps/${uuid}/purge`)).status, 200);
  });

  it("keeps the key from an unprivileged local user, whose start is refused", async () => {
    const keyFile = join(sup.dataDir, "api.key");
    // Even with the data dir opened up, the file's own mode keeps the key.
    const dataDirMode = statSync(sup.dataDir).mode & 0o777;
    chmodSync(sup.dataDir, 0o755);
    try {
      const read = spawnSync("setpriv", [...NOBODY, "cat", keyFile], { encoding: "utf8" });
      assert.notEqual(read.status, 0);
      assert.match(read.stderr, /Permission denied/);
      assert.equal(read.stdout, "");
    } finally {
      chmodSync(sup.dataDir, dataDirMode);
    }
    const touched = marker();
    const curl = spawnSync(
      "setpriv",
      [
        ...NOBODY,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        JSON.stringify(shellSpec(touched)),
        `${sup.base}/v1/apps/${randomUuid()}/start`,
      ],
      { encoding: "utf8" },
    );
    assert.equal(curl.stdout, "401", curl.stderr);
    await sleep(1000);
    assert.equal(existsSync(touched), false, "the command ran");
  });

  it("refuses to start with a key file other users may read", async () => {
    const data = await tempDir("tbf-supauth");
    try {
      writeFileSync(join(data.path, "api.key"), "exposed-key\n", { mode: 0o644 });
      const run = spawnTabbify([
        "supervisor",
        "--data",
        data.path,
        "--listen",
        `127.0.0.1:${await freePort()}`,
      ]);
      assert.notEqual(await run.exited, 0);
      assert.match(run.output(), /readable by other users .*chmod 600/);
      assert.equal(run.output().includes("exposed-key"), false, "the key reached the output");
    } finally {
      await data.remove();
    }
  });

  it("refuses to start with the node key as its API key", async () => {
    const data = await tempDir("tbf-supauth");
    try {
      const run = spawnTabbify(
        ["supervisor", "--data", data.path, "--listen", `127.0.0.1:${await freePort()}`],
        {
          TABBIFY_NODE_KEY: NODE_KEY,
          SUPERVISOR_API_KEY: NODE_KEY,
        },
      );
      assert.notEqual(await run.exited, 0);
      assert.match(run.output(), /API key is the node key/);
    } finally {
      await data.remove();
    }
  });

  it("takes SUPERVISOR_API_KEY over the file, and the file is then not the key", async () => {
    const fromEnv = new SupervisorUnderTest(["--warm-spares", "0"], "local", {
      SUPERVISOR_API_KEY: "supervisor-auth-env-key",
    });
    writeFileSync(join(fromEnv.dataDir, "api.key"), "supervisor-auth-file-key\n", { mode: 0o600 });
    try {
      await fromEnv.start();
      const fileKey = await fetch(`${fromEnv.base}/v1/apps`, {
        headers: { authorization: "Bearer supervisor-auth-file-key" },
      });
      assert.equal(fileKey.status, 403);
      const ok = await fetch(`${fromEnv.base}/v1/apps`, {
        headers: { authorization: "Bearer supervisor-auth-env-key" },
      });
      assert.equal(ok.status, 200);
      assert.equal((await fromEnv.call("GET", "/v1/apps")).status, 200);
    } finally {
      await fromEnv.cleanup();
    }
  });
});
