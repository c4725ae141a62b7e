import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, realpathSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { tenantRegistryAccess } from "../src/node/registry-access.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { httpGet, type SupervisorUnderTest, startBuilderOnRoster } from "./runtime-plane-support.js";
import { busyboxPageDockerfile, createGitRepo, type GitRepo } from "./support/git-repo.js";
import { makeClientKey, startSshd, type TestSshd } from "./support/sshd.js";
import { ensureDockerd, requireCommand, tempDir } from "./support/tools.js";

/**
 * ssh:// git remotes, end to end: a private OpenSSH server serves a bare repository; the node
 * fetches it with its own key (known_hosts filled by the operator) into its push repository, and
 * the builder clones it from the node over HTTP, builds and runs it.
 */

const NODE_KEY = "git-ssh-node-key";
const SUPERVISOR_KEY = "git-ssh-supervisor-key";

const dockerfile = busyboxPageDockerfile;

let root: { path: string; remove(): Promise<void> };
let auth: FastifyInstance;
let registry: RunningRegistry;
let node: RunningNode;
let supervisor: SupervisorUnderTest;
let sshd: TestSshd;
let repo: GitRepo;
let sshDir: string;

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

/** What `/app/<uuid>/` answers once it includes `want` (or last, after 20 s). */
async function answered(uuid: string, want: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  let got = "";
  while (Date.now() < deadline && !got.includes(want)) {
    got = await httpGet(new URL(node.url).host, `/app/${uuid}/`)
      .then((x) => x.body)
      .catch(() => "");
    if (!got.includes(want)) await new Promise((res) => setTimeout(res, 250));
  }
  return got;
}

const sshUrl = () => `ssh://${sshd.user}@127.0.0.1:${sshd.port}${repo.bareDir}`;

before(async () => {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  root = await tempDir("tabbify-git-ssh");
  sshDir = join(root.path, "node-ssh");
  const clientPub = makeClientKey(sshDir);
  sshd = await startSshd(join(root.path, "sshd"), clientPub);
  repo = await createGitRepo(join(root.path, "srv"), "team", "over-ssh");
  copyFileSync(realpathSync("/bin/busybox"), join(repo.workDir, "busybox"));

  const authDir = join(root.path, "auth");
  const signing = await loadOrCreateSigningKey(authDir);
  auth = buildAuthApp({ key: signing });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
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
      sshDir,
    },
  });
});

after(async () => {
  await supervisor?.cleanup();
  await node?.close();
  await registry?.close();
  await auth?.close();
  await sshd?.stop();
  await root?.remove();
});

describe("ssh git remotes", () => {
  it("an ssh host missing from known_hosts is refused with a code naming the file; nothing is fetched", async () => {
    await repo.commit({
      Dockerfile: dockerfile("ssh-v1"),
      "www/index.html": "ssh-v1\n",
      "tabbify.toml": '[app]\nname = "over-ssh"\n',
    });
    const r = await api("POST", "/v1/deploy", { repo_url: sshUrl(), ref: "main", tenant: "team" });
    assert.equal(r.status, 502, JSON.stringify(r.json));
    assert.equal(r.json.code, "SSH_HOST_KEY_UNKNOWN");
    assert.ok(r.json.error.includes(join(sshDir, "known_hosts")), r.json.error);
    assert.doesNotMatch(sshd.log(), /Accepted publickey/);
  });

  it("the node fetches over ssh with its key, the builder clones from the node, and the app answers", async () => {
    writeFileSync(join(sshDir, "known_hosts"), sshd.knownHostsLine, { mode: 0o600 });
    supervisor = await startBuilderOnRoster(node, "sup-ssh", {
      nodeKey: NODE_KEY,
      supervisorKey: SUPERVISOR_KEY,
    });
    const sha = await repo.commit({ Dockerfile: dockerfile("ssh-v2"), "www/index.html": "ssh-v2\n" });
    const started = Date.now();
    const r = await api("POST", "/v1/deploy", { repo_url: sshUrl(), ref: "main", tenant: "team" });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.match(sshd.log(), /Accepted publickey/);
    const body = await finished(r.json.id);
    assert.equal(body.success, true, JSON.stringify(body));
    const status = await api("GET", `/v1/deploy/${r.json.id}/status`);
    assert.equal(status.json.ref, sha, JSON.stringify(status.json));
    const mirror = /\/git\/(ssh-over-ssh-[0-9a-f]{8})\.git$/.exec(status.json.repo_url);
    assert.ok(mirror, status.json.repo_url);
    assert.match(await answered(body.app_uuid, "ssh-v2"), /ssh-v2/);
    console.log(`# ssh deploy: POST until the app answered ${Date.now() - started} ms`);
    // The staged ref goes once the deploy has ended.
    await new Promise((res) => setTimeout(res, 500));
    const refs = spawnSync(
      "git",
      ["--git-dir", join(root.path, "node", "git", `${mirror[1]}.git`), "for-each-ref", "refs/tabbify"],
      { encoding: "utf8" },
    );
    assert.equal(refs.stdout.trim(), "", "a staged or scratch ref was left behind");
  });

  it("a registered app whose repo_url is ssh deploys through the node the same way", async () => {
    const refused = await api("PUT", "/api/v1/apps/over-ssh", {
      tenant: "team",
      repo_url: "ssh://-oProxyCommand=x/a.git",
    });
    assert.equal(refused.status, 400, JSON.stringify(refused.json));
    const created = await api("PUT", "/api/v1/apps/over-ssh", { tenant: "team", repo_url: sshUrl() });
    assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created.json));
    const sha = await repo.commit({ "www/index.html": "ssh-v3\n" });
    const r = await api("POST", "/api/v1/apps/over-ssh/deploy", {});
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const body = await finished(r.json.id);
    assert.equal(body.success, true, JSON.stringify(body));
    const status = await api("GET", `/v1/deploy/${r.json.id}/status`);
    assert.equal(status.json.ref, sha);
    assert.match(await answered(body.app_uuid, "ssh-v3"), /ssh-v3/);
  });

  it("a ref the ssh remote lacks is a 404 that names it", async () => {
    const r = await api("POST", "/v1/deploy", { repo_url: sshUrl(), ref: "no-such-branch", tenant: "team" });
    assert.equal(r.status, 404, JSON.stringify(r.json));
    assert.equal(r.json.code, "GIT_REF_NOT_FOUND");
  });
});
