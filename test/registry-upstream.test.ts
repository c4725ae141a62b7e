// Upstream wrapper mode (issue 2 §4): the registry supervises Debian's `docker-registry` as a
// child on loopback and streams /v2 to it, with auth and tenant namespaces still enforced in
// front; the child is restarted when it dies and stopped with the registry.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { issueTenantToken } from "../src/auth/tenant-token.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import {
  bearerFor,
  call,
  errorCode,
  patternChunks,
  pushBlob,
  pushImage,
  spawnRegistry,
  streamDigest,
  streamRequest,
} from "./registry-helpers.js";
import { freePort, requireCommand, writeDockerRegistryConfig } from "./support/tools.js";

let binary: string;
let dir: string;
let auth: FastifyInstance;
let registry: RunningRegistry;
let acme: Record<string, string>;

before(async () => {
  binary = requireCommand("docker-registry", "docker-registry");
  dir = await mkdtemp(join(tmpdir(), "tabbify-registry-upstream-"));
  const port = await freePort();
  const config = await writeDockerRegistryConfig(dir, join(dir, "upstream-data"), port);
  const key = await loadOrCreateSigningKey(join(dir, "auth"));
  auth = buildAuthApp({ key });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  registry = await startRegistry({
    host: "127.0.0.1",
    port: 0,
    dataDir: join(dir, "registry"),
    authUrl,
    upstreamUrl: `http://127.0.0.1:${port}`,
    upstreamCmd: `${binary} serve ${config}`,
  });
  const jwt = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 3600 });
  acme = await bearerFor(registry.url, jwt, [
    "repository:acme/app:pull,push",
    "repository:acme/big:pull,push",
    "repository:globex/app:pull",
    "registry:catalog:*",
  ]);
});

after(async () => {
  await registry?.close();
  await auth?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("pushes and pulls through the upstream, with Location rewritten to our host", async () => {
  const start = await call(registry.url, "/v2/acme/app/blobs/uploads/", { method: "POST", headers: acme });
  assert.equal(start.status, 202);
  const location = start.headers.get("location")!;
  assert.ok(location.startsWith(`${registry.url}/v2/acme/app/blobs/uploads/`), location);

  const image = await pushImage(registry.url, "acme/app", "v1", { headers: acme });
  const manifest = await call(registry.url, "/v2/acme/app/manifests/v1", {
    headers: { ...acme, accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(manifest.status, 200);
  assert.equal(manifest.headers.get("docker-content-digest"), image.digest);
  const tags = await call(registry.url, "/v2/acme/app/tags/list", { headers: acme });
  assert.deepEqual(tags.json(), { name: "acme/app", tags: ["v1"] });
  const blob = await call(registry.url, `/v2/acme/app/blobs/${image.layerDigest}`, { headers: acme });
  assert.equal(blob.status, 200);
  assert.equal(blob.body.toString(), "layer of acme/app:v1");
});

it("streams a 64 MiB chunked upload through without buffering", async () => {
  const start = await call(registry.url, "/v2/acme/big/blobs/uploads/", { method: "POST", headers: acme });
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  const patch = await streamRequest(
    registry.url,
    "PATCH",
    start.headers.get("location")!,
    patternChunks(64),
    {
      headers: acme,
      onChunk: (c) => hash.update(c),
    },
  );
  assert.equal(patch.status, 202, patch.body);
  const digest = `sha256:${hash.digest("hex")}`;
  const location = new URL(String(patch.headers.location));
  location.searchParams.set("digest", digest);
  const put = await call(registry.url, `${location.pathname}${location.search}`, {
    method: "PUT",
    headers: acme,
  });
  assert.equal(put.status, 201, put.body.toString());
  const head = await call(registry.url, `/v2/acme/big/blobs/${digest}`, { method: "HEAD", headers: acme });
  assert.equal(head.headers.get("content-length"), String(64 * 1024 * 1024));
  const pulled = await streamDigest(registry.url, `/v2/acme/big/blobs/${digest}`, acme);
  assert.equal(pulled.digest, digest);
});

it("keeps auth and tenancy in front of the upstream", async () => {
  const anonymous = await call(registry.url, "/v2/acme/app/tags/list");
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
  const other = await call(registry.url, "/v2/globex/app/tags/list", { headers: acme });
  assert.equal(other.status, 403);
  assert.equal(errorCode(other), "DENIED");
  const catalog = await call(registry.url, "/v2/_catalog", { headers: acme });
  assert.equal(catalog.status, 403);
});

it("restarts the upstream when it dies", async () => {
  const { execFileSync: run } = await import("node:child_process");
  const pids = run("pgrep", ["-f", `${binary} serve ${dir}`])
    .toString()
    .trim()
    .split("\n")
    .map(Number);
  assert.equal(pids.length, 1);
  process.kill(pids[0]!, "SIGKILL");
  const deadline = Date.now() + 20_000;
  let status = 0;
  while (Date.now() < deadline) {
    status = (await call(registry.url, "/v2/acme/app/tags/list", { headers: acme })).status;
    if (status === 200) break;
    await sleep(200);
  }
  assert.equal(status, 200, "the upstream answers again after a restart");
  await pushBlob(registry.url, "acme/app", "after restart", acme);
});

it("reads of a reference that is neither tag nor digest are 404 MANIFEST_UNKNOWN in front of the upstream too", async () => {
  const r = await call(registry.url, "/v2/acme/app/manifests/-bad", { headers: acme });
  assert.equal(r.status, 404);
  assert.equal(errorCode(r), "MANIFEST_UNKNOWN");
});

/** Whether a process is still alive (a zombie counts as gone: it runs nothing and holds no port). */
async function alive(pid: number): Promise<boolean> {
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return status !== "" && !/^State:\s+Z/m.test(status);
}

it("the upstream child exits when the registry is SIGKILLed", async () => {
  const port = await freePort();
  const config = await writeDockerRegistryConfig(dir, join(dir, "orphan-data"), port);
  const spawned = await spawnRegistry(join(dir, "orphan-registry"), [
    "--upstream-url",
    `http://127.0.0.1:${port}`,
    "--upstream-cmd",
    `${binary} serve ${config}`,
  ]);
  const { readFile } = await import("node:fs/promises");
  const children = (await readFile(`/proc/${spawned.pid}/task/${spawned.pid}/children`, "utf8"))
    .trim()
    .split(/\s+/)
    .map(Number);
  assert.equal(children.length, 1, "one upstream child");
  const upstreamPid = children[0]!;
  assert.ok(await alive(upstreamPid));
  assert.equal((await fetch(`http://127.0.0.1:${port}/v2/`)).status, 200, "the upstream serves");
  await spawned.stop("SIGKILL");
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && (await alive(upstreamPid))) await sleep(100);
  assert.equal(await alive(upstreamPid), false, "the upstream died with its parent");
  await assert.rejects(fetch(`http://127.0.0.1:${port}/v2/`), "nothing listens on the upstream port");
});
