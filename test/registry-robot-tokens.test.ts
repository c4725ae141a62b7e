// Issue 14 §2 with real processes and the real docker CLI: robot tokens from
// `tabbify auth token --scope …`, limited at the registry both ways (docker login works, a
// pull-only robot pulls but its push is refused with the scope it lacks); the catalog as two
// tenants see it; `--immutable-tags` refusing a moved tag.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { bearerFor, call, errorCode, pushImage } from "./registry-helpers.js";
import {
  buildScratchImage,
  ensureDockerd,
  type RunningProcess,
  requireCommand,
  run,
  spawnTabbify,
  tempDir,
} from "./support/tools.js";

let dir: { path: string; remove(): Promise<void> };
const procs: RunningProcess[] = [];
let base: string;
let host: string;
let authData: string;
let dockerConfig: string;

async function token(tenant: string, subject: string, scopes: string[] = []): Promise<string> {
  const { stdout, stderr } = await run(process.execPath, [
    "dist/src/main/tabbify.js",
    "auth",
    "token",
    "--tenant",
    tenant,
    "--subject",
    subject,
    "--data",
    authData,
    ...scopes.flatMap((s) => ["--scope", s]),
  ]);
  if (scopes.length > 0) assert.match(stderr, /limited to repository:/);
  return stdout.trim().split("\n").at(-1)!;
}

function docker(args: string[], input?: string) {
  return run("docker", args, {
    env: { ...process.env, DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: "0" },
    timeoutMs: 180_000,
    ...(input === undefined ? {} : { input }),
  });
}

before(async () => {
  requireCommand("docker", "docker.io");
  await ensureDockerd();
  dir = await tempDir("tabbify-registry-robot");
  authData = join(dir.path, "auth");
  const auth = spawnTabbify(["auth", "--listen", "127.0.0.1:0", "--data", authData]);
  procs.push(auth);
  const [, authUrl] = await auth.waitForLine(/listening on (http:\/\/\S+)/);
  const registry = spawnTabbify(
    [
      "registry",
      "--listen",
      "127.0.0.1:0",
      "--data",
      join(dir.path, "registry"),
      "--immutable-tags",
      "acme/*:v*",
    ],
    { REGISTRY_AUTH_URL: authUrl! },
  );
  procs.push(registry);
  [, base] = (await registry.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/)) as [string, string];
  host = base.replace("http://", "");
  dockerConfig = join(dir.path, "docker-config");
  await mkdir(dockerConfig);
});

after(async () => {
  for (const p of procs.reverse()) await p.stop();
  await dir?.remove();
});

it("a pull-only robot logs in with docker, pulls, and is refused a push naming the scope it needs", async () => {
  const tag = `${host}/acme/web:v1`;
  await buildScratchImage(tag);
  const owner = await token("acme", "alice");
  await docker(["login", host, "-u", "x", "--password-stdin"], owner);
  await docker(["push", tag]);
  await docker(["rmi", tag]);

  const robot = await token("acme", "ci-bot", ["repository:acme/web:pull"]);
  await docker(["logout", host]);
  await docker(["login", host, "-u", "ci-bot", "--password-stdin"], robot);
  await docker(["pull", tag]);
  const pushTag = `${host}/acme/web:robot-push`;
  await docker(["tag", tag, pushTag]);
  const refused = await docker(["push", pushTag]).then(
    () => "pushed",
    (err: Error) => err.message,
  );
  assert.notEqual(refused, "pushed", "the pull-only robot cannot push");
  await docker(["rmi", tag, pushTag]);

  // The same refusal on the wire: 403 DENIED with the scope, not a 401 that sends docker round.
  const headers = await bearerFor(base, robot, ["repository:acme/web:pull,push"]);
  const post = await call(base, "/v2/acme/web/blobs/uploads/", { method: "POST", headers });
  assert.equal(post.status, 403);
  assert.equal(errorCode(post), "DENIED");
  assert.match(post.body.toString(), /repository:acme\/web:push/);
  const other = await call(base, "/v2/acme/api/tags/list", {
    headers: await bearerFor(base, robot, ["repository:acme/api:pull"]),
  });
  assert.equal(other.status, 403, "a robot scoped to acme/web does not read acme/api");
});

it("_catalog lists only the token's tenant, paged; a robot sees only what it may pull", async () => {
  const acme = await token("acme", "alice");
  const globex = await token("globex", "bob");
  const acmeHeaders = await bearerFor(base, acme, ["repository:acme/api:push,pull", "registry:catalog:*"]);
  await pushImage(base, "acme/api", "latest", { headers: acmeHeaders });
  await pushImage(base, "globex/app", "latest", {
    headers: await bearerFor(base, globex, ["repository:globex/app:push,pull"]),
  });

  const seen = await call(base, "/v2/_catalog", { headers: acmeHeaders });
  assert.equal(seen.status, 200);
  assert.deepEqual((seen.json() as { repositories: string[] }).repositories, ["acme/api", "acme/web"]);
  const page = await call(base, "/v2/_catalog?n=1", { headers: acmeHeaders });
  assert.deepEqual((page.json() as { repositories: string[] }).repositories, ["acme/api"]);
  assert.equal(page.headers.get("link"), '</v2/_catalog?n=1&last=acme%2Fapi>; rel="next"');
  const next = await call(base, "/v2/_catalog?n=1&last=acme%2Fapi", { headers: acmeHeaders });
  assert.deepEqual((next.json() as { repositories: string[] }).repositories, ["acme/web"]);
  assert.equal(next.headers.get("link"), null, "no Link towards another tenant's names");

  const globexSeen = await call(base, "/v2/_catalog?n=5&last=a", {
    headers: await bearerFor(base, globex, ["registry:catalog:*"]),
  });
  assert.deepEqual((globexSeen.json() as { repositories: string[] }).repositories, ["globex/app"]);
  assert.doesNotMatch(globexSeen.body.toString() + (globexSeen.headers.get("link") ?? ""), /acme/);

  const robot = await token("acme", "ci-bot", ["repository:acme/web:pull"]);
  const robotSeen = await call(base, "/v2/_catalog", {
    headers: await bearerFor(base, robot, ["registry:catalog:*"]),
  });
  assert.deepEqual((robotSeen.json() as { repositories: string[] }).repositories, ["acme/web"]);
  assert.equal((await call(base, "/v2/_catalog")).status, 401, "no token, no catalog");
});

it("--immutable-tags: the same digest may be re-pushed, another is 409 TAG_IMMUTABLE, latest moves", async () => {
  const acme = await token("acme", "alice");
  const headers = await bearerFor(base, acme, ["repository:acme/imm:push,pull,delete"]);
  const first = await pushImage(base, "acme/imm", "v1", { headers });
  const again = await call(base, "/v2/acme/imm/manifests/v1", {
    method: "PUT",
    body: first.manifest,
    headers: { ...headers, "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(again.status, 201, "same digest is fine");
  const moved = await pushImage(base, "acme/imm", "v1", { headers, layer: Buffer.from("other") }).then(
    () => "moved",
    (err: Error) => err.message,
  );
  assert.match(moved, /409.*TAG_IMMUTABLE/);
  const del = await call(base, "/v2/acme/imm/manifests/v1", { method: "DELETE", headers });
  assert.equal(del.status, 409);
  const byDigest = await call(base, `/v2/acme/imm/manifests/${first.digest}`, { method: "DELETE", headers });
  assert.equal(byDigest.status, 409, "deleting the manifest would drop the tag too");
  const still = await call(base, "/v2/acme/imm/manifests/v1", { method: "HEAD", headers });
  assert.equal(still.headers.get("docker-content-digest"), first.digest, "v1 never moved");
  await pushImage(base, "acme/imm", "latest", { headers });
  await pushImage(base, "acme/imm", "latest", { headers, layer: Buffer.from("newer") });
});
