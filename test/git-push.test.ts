import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { issueTenantToken, verifyTenantToken } from "../src/auth/tenant-token.js";
import { sleep } from "../src/core/sleep.js";
import { runGitHttpBackend } from "../src/node/git-http.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { tenantRegistryAccess } from "../src/node/registry-access.js";
import { loadGitCredentials } from "../src/pipeline/git-credentials.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { httpGet, type SupervisorUnderTest, startBuilderOnRoster } from "./runtime-plane-support.js";
import { busyboxPageDockerfile, createGitRepo, type GitRepo, gitEnv } from "./support/git-repo.js";
import { ensureDockerd, requireCommand, tempDir } from "./support/tools.js";

/**
 * Git deploys without a forge, end to end with real git, dockerd, registry and a builder:
 * a repository served by `git http-backend` on a host that is no configured forge, and
 * `git push` straight to the node's `/git/<app>.git`.
 */

const NODE_KEY = "git-push-node-key";
const SUPERVISOR_KEY = "git-push-supervisor-key";
const SUPERVISOR = "sup-git";

const dockerfile = busyboxPageDockerfile;
const FAILING_DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  'RUN ["/bin/busybox", "sh", "-c", "echo the-failing-step-says-91ab; exit 4"]',
  "",
].join("\n");

let root: { path: string; remove(): Promise<void> };
let auth: FastifyInstance;
let registry: RunningRegistry;
let node: RunningNode;
let supervisor: SupervisorUnderTest;
let gitServer: Server;
let gitServerUrl: string;
let served: GitRepo;
let acmeToken: string;
let privateServer: Server;
let privateServerUrl: string;
let privateRepo: GitRepo;
const PRIVATE_USER = "deployer";
const PRIVATE_PASSWORD = "git-host-password-9f3c1a";

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${NODE_KEY}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: await res.json() };
}

/** A work tree with the app at `greeting` (or a failing build), committed on main. */
function workTree(name: string, greeting: string, failing = false): string {
  const dir = join(root.path, "work", name);
  mkdirSync(join(dir, "www"), { recursive: true });
  copyFileSync(realpathSync("/bin/busybox"), join(dir, "busybox"));
  writeFileSync(join(dir, "www", "index.html"), `${greeting}\n`);
  writeFileSync(join(dir, "Dockerfile"), failing ? FAILING_DOCKERFILE : dockerfile(greeting));
  writeFileSync(join(dir, "tabbify.toml"), `[app]\nname = "${name}"\n`);
  const g = (...args: string[]) => spawnSync("git", args, { cwd: dir, env: gitEnv, encoding: "utf8" });
  if (g("rev-parse", "--git-dir").status !== 0) g("init", "--quiet", "--initial-branch=main");
  g("add", "-A");
  g("commit", "--quiet", "--allow-empty", "-m", greeting);
  return dir;
}

/** `git push` as a user runs it; resolves with its exit code and everything it printed. */
function gitPush(
  dir: string,
  remote: string,
  ...extra: string[]
): Promise<{ code: number; out: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn("git", ["push", ...extra, remote, "HEAD:main"], { cwd: dir, env: gitEnv });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.on("close", (code) => resolve({ code: code ?? 1, out, ms: Date.now() - started }));
  });
}

async function finished(id: string): Promise<{ success?: boolean; app_uuid: string }> {
  const deadline = Date.now() + 150_000;
  let body = { app_uuid: "" } as { success?: boolean; app_uuid: string };
  while (Date.now() < deadline) {
    const res = await api("GET", `/v1/deploy/${id}/status`);
    body = res.json;
    if (res.status === 200) return body;
    await sleep(250);
  }
  return body;
}

/** The push repository's `refs/tabbify/staged/*`, once deploy-end listeners had a moment. */
async function stagedRefs(name: string): Promise<string[]> {
  await sleep(500);
  const out = spawnSync(
    "git",
    ["--git-dir", join(root.path, "node", "git", `${name}.git`), "for-each-ref", "refs/tabbify/staged"],
    {
      encoding: "utf8",
    },
  );
  assert.equal(out.status, 0, out.stderr);
  return out.stdout.split("\n").filter(Boolean);
}

function pushUrl(name: string, password: string): string {
  const u = new URL(`${node.url}/git/${name}.git`);
  u.username = "me";
  u.password = password;
  return u.href;
}

async function answers(uuid: string, want: string, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const res = await httpGet(new URL(node.url).host, `/app/${uuid}/`, 10_000).catch(() => undefined);
    last = res?.body ?? "";
    if (res?.status === 200 && last.includes(want)) return last;
    await sleep(250);
  }
  throw new Error(`app ${uuid} never answered ${want} (last: ${last.slice(0, 200)})`);
}

before(async () => {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  root = await tempDir("tabbify-git-push");
  const authDir = join(root.path, "auth");
  const signing = await loadOrCreateSigningKey(authDir);
  auth = buildAuthApp({ key: signing });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
  acmeToken = await issueTenantToken(signing, { tenant: "acme", subject: "ci", ttlSeconds: 600 });

  // A plain git server (no forge API) on 127.0.0.1 under a path.
  const projectRoot = join(root.path, "srv");
  served = await createGitRepo(projectRoot, "team", "plain");
  copyFileSync(realpathSync("/bin/busybox"), join(served.workDir, "busybox"));
  gitServer = createServer((req, res) => {
    const [path = "", query = ""] = (req.url ?? "").split("?", 2) as [string, string?];
    if (!path.startsWith("/scm/")) {
      res.writeHead(404).end();
      return;
    }
    void runGitHttpBackend({ req, res, projectRoot, pathInfo: path.slice(4), query });
  });
  await new Promise<void>((r) => gitServer.listen(0, "127.0.0.1", r));
  gitServerUrl = `http://127.0.0.1:${(gitServer.address() as AddressInfo).port}/scm`;

  // A private git host (Basic auth, as a plain nginx/Apache in front of http-backend would ask).
  const privateRoot = join(root.path, "private-srv");
  privateRepo = await createGitRepo(privateRoot, "team", "secret");
  copyFileSync(realpathSync("/bin/busybox"), join(privateRepo.workDir, "busybox"));
  const expected = `Basic ${Buffer.from(`${PRIVATE_USER}:${PRIVATE_PASSWORD}`).toString("base64")}`;
  privateServer = createServer((req, res) => {
    const [path = "", query = ""] = (req.url ?? "").split("?", 2) as [string, string?];
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="git"' }).end();
      return;
    }
    void runGitHttpBackend({ req, res, projectRoot: privateRoot, pathInfo: path, query });
  });
  await new Promise<void>((r) => privateServer.listen(0, "127.0.0.1", r));
  privateServerUrl = `http://127.0.0.1:${(privateServer.address() as AddressInfo).port}`;
  const credentialsFile = join(root.path, "git-credentials");
  writeFileSync(
    credentialsFile,
    `# the node's credential for the private host\n${privateServerUrl.replace("http://", `http://${PRIVATE_USER}:${PRIVATE_PASSWORD}@`)}\n`,
    { mode: 0o600 },
  );

  node = await startNode({
    port: 0,
    dataDir: join(root.path, "node"),
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: {
      registry: await tenantRegistryAccess({
        registryHost: new URL(registry.url).host,
        authDataDir: authDir,
      }),
      supervisorKey: SUPERVISOR_KEY,
      allowPrivateRepos: true,
      gitCredentials: await loadGitCredentials(credentialsFile),
    },
    registry: { verifyTenantToken: (t) => verifyTenantToken(signing, t) },
  });
  supervisor = await startBuilderOnRoster(node, SUPERVISOR, {
    nodeKey: NODE_KEY,
    supervisorKey: SUPERVISOR_KEY,
  });
});

after(async () => {
  await supervisor?.cleanup();
  await node?.close();
  await registry?.close();
  await auth?.close();
  await new Promise((r) => (gitServer ? gitServer.close(r) : r(undefined)));
  await new Promise((r) => (privateServer ? privateServer.close(r) : r(undefined)));
  await root?.remove();
});

describe("git deploys without a forge", () => {
  it("deploys a repository served by git http-backend on a host that is no forge", async () => {
    await served.commit({
      Dockerfile: dockerfile("plain-v1"),
      "www/index.html": "plain-v1\n",
      "tabbify.toml": '[app]\nname = "plain"\n',
    });
    const { status, json } = await api("POST", "/v1/deploy", {
      repo_url: `${gitServerUrl}/team/plain.git`,
      ref: "main",
      tenant: "team",
    });
    assert.equal(status, 202, JSON.stringify(json));
    const deadline = Date.now() + 150_000;
    let body: any;
    while (Date.now() < deadline) {
      const res = await api("GET", `/v1/deploy/${json.id}/status`);
      body = res.json;
      if (res.status === 200) break;
      await sleep(250);
    }
    assert.equal(body.success, true, JSON.stringify(body));
    await answers(body.app_uuid, "plain-v1");
  });

  it("git push deploys the pushed sha, with remote: progress lines and the app's URL", async () => {
    const dir = workTree("myapp", "pushed-v1");
    const push = await gitPush(dir, pushUrl("myapp", NODE_KEY));
    assert.equal(push.code, 0, push.out);
    assert.match(push.out, /remote: deploying [0-9a-f]{12} as deploy /);
    assert.match(push.out, /remote: -----> build_and_push/);
    assert.match(push.out, /remote: \[build_and_push\] Successfully built/);
    assert.match(push.out, new RegExp(`remote: target ${SUPERVISOR} \\(docker\\): ok`));
    const url = /remote: app: (\S+)/.exec(push.out)?.[1];
    assert.ok(url?.startsWith(`${node.url}/app/`), push.out);
    const uuid = /\/app\/([0-9a-f-]{36})\//.exec(url!)![1]!;
    await answers(uuid, "pushed-v1");
    assert.doesNotMatch(push.out, new RegExp(NODE_KEY), "the key never comes back");

    // The next push answers with the new version (timed: push → new version answering).
    workTree("myapp", "pushed-v2");
    const second = await gitPush(dir, pushUrl("myapp", NODE_KEY));
    assert.equal(second.code, 0, second.out);
    await answers(uuid, "pushed-v2");
    console.log(`# git push -> new version answering: ${second.ms} ms`);
    assert.deepEqual(await stagedRefs("myapp"), [], "refs/tabbify/staged/* outlived their deploys");
  });

  it("-o no-wait returns before the deploy ends", async () => {
    const dir = workTree("myapp", "pushed-v3");
    const push = await gitPush(dir, pushUrl("myapp", NODE_KEY), "-o", "no-wait");
    assert.equal(push.code, 0, push.out);
    assert.match(push.out, /remote: not waiting \(-o no-wait\)/);
    assert.doesNotMatch(push.out, /remote: app: /);
  });

  it("a failing build makes git push exit non-zero, with the build's output", async () => {
    const dir = workTree("broken", "broken-v1", true);
    const push = await gitPush(dir, pushUrl("broken", NODE_KEY));
    assert.notEqual(push.code, 0, push.out);
    assert.match(push.out, /remote: deploy failed: /);
    assert.match(push.out, /pre-receive hook declined/);
    // The refused commit's staging ref goes too: nothing references it any more.
    assert.deepEqual(await stagedRefs("broken"), []);
  });

  it("a build whose every target fails to start makes git push exit non-zero, naming the target", async () => {
    const dir = workTree("crashy", "crashy-v1");
    writeFileSync(
      join(dir, "Dockerfile"),
      'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox", "sh", "-c", "exit 3"]\n',
    );
    spawnSync("git", ["commit", "--quiet", "-am", "exits at once"], { cwd: dir, env: gitEnv });
    const push = await gitPush(dir, pushUrl("crashy", NODE_KEY));
    assert.notEqual(push.code, 0, push.out);
    assert.match(push.out, new RegExp(`remote: target ${SUPERVISOR} \\(docker\\): failed: `));
    assert.match(push.out, /remote: deploy failed: 1 of 1 targets did not take the release/);
    assert.doesNotMatch(push.out, /TABBIFY-OK/);
    assert.match(push.out, /pre-receive hook declined/);
  });

  it("a private non-forge host is read and cloned with the node's credential, which is never recorded", async () => {
    await privateRepo.commit({
      Dockerfile: dockerfile("private-v1"),
      "www/index.html": "private-v1\n",
      "tabbify.toml": '[app]\nname = "secret"\n',
    });
    const { status, json } = await api("POST", "/v1/deploy", {
      repo_url: `${privateServerUrl}/team/secret.git`,
      ref: "main",
      tenant: "team",
    });
    assert.equal(status, 202, JSON.stringify(json));
    const body = await finished(json.id);
    assert.equal(body.success, true, JSON.stringify(body));
    await answers(body.app_uuid, "private-v1");
    const events = await fetch(`${node.url}/v1/deploy/${json.id}/events`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    }).then((r) => r.text());
    assert.match(events, /using the node's credential for 127\.0\.0\.1:/);
    for (const text of [events, JSON.stringify(body), supervisor.log]) {
      assert.ok(!text.includes(PRIVATE_PASSWORD), "the host password was recorded");
      assert.ok(!text.includes(Buffer.from(`${PRIVATE_USER}:${PRIVATE_PASSWORD}`).toString("base64")));
    }
  });

  it("ssh remotes without the node's ssh key say where to put it; a local path without --allow-local-repos says how to enable it", async () => {
    for (const repo_url of ["ssh://git@example.com/team/app.git", "git@example.com:team/app.git"]) {
      const r = await api("POST", "/v1/deploy", { repo_url, ref: "main", tenant: "team" });
      assert.equal(r.status, 503, repo_url);
      assert.equal(r.json.code, "SSH_KEY_MISSING");
      assert.match(r.json.error, /ssh\/id_ed25519/);
    }
    const local = await api("POST", "/v1/deploy", { repo_url: served.workDir, ref: "main", tenant: "team" });
    assert.equal(local.status, 400, JSON.stringify(local.json));
    assert.equal(local.json.code, "REPO_URL_REFUSED");
    assert.match(local.json.error, /allow-local-repos/);
  });

  it("a tenant pushes only to its own apps, and the wrong password is refused", async () => {
    const created = await api("PUT", "/api/v1/apps/theirs", { tenant: "other" });
    assert.ok(created.status === 201 || created.status === 200, JSON.stringify(created.json));
    const dir = workTree("theirs", "not-mine");
    const refused = await gitPush(dir, pushUrl("theirs", acmeToken));
    assert.notEqual(refused.code, 0, refused.out);
    assert.match(refused.out, /403/);
    const wrong = await gitPush(dir, pushUrl("theirs", "not-the-key"));
    assert.notEqual(wrong.code, 0, wrong.out);
    const anonymous = await fetch(`${node.url}/git/theirs.git/info/refs?service=git-upload-pack`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Basic/);
  });
});
