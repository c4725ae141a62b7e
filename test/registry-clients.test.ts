/**
 * The registry against real clients: the docker CLI on the real dockerd, and skopeo. Runs once in
 * anonymous dev mode and once behind `tabbify auth`, where tenants are isolated.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  buildScratchImage,
  ensureDockerd,
  type RunningProcess,
  requireCommand,
  run,
  spawnTabbify,
  tempDir,
} from "./support/tools.js";

interface Stack {
  /** host:port, as docker and skopeo name the registry. */
  host: string;
  base: string;
  /** Tenant JWTs by tenant, when auth is on. */
  jwt: Record<string, string>;
  dockerConfig: string;
  work: string;
  stop(): Promise<void>;
}

async function startStack(withAuth: boolean): Promise<Stack> {
  const dir = await tempDir("tabbify-registry-clients");
  const procs: RunningProcess[] = [];
  const stop = async () => {
    for (const p of procs.reverse()) await p.stop();
    await dir.remove();
  };
  try {
    const jwt: Record<string, string> = {};
    const env: Record<string, string> = {};
    if (withAuth) {
      const authData = join(dir.path, "auth");
      const auth = spawnTabbify(["auth", "--listen", "127.0.0.1:0", "--data", authData]);
      procs.push(auth);
      const [, authUrl] = await auth.waitForLine(/listening on (http:\/\/\S+)/);
      for (const tenant of ["acme", "globex"]) {
        const { stdout } = await run(process.execPath, [
          "dist/src/main/tabbify.js",
          "auth",
          "token",
          "--tenant",
          tenant,
          "--subject",
          "alice",
          "--data",
          authData,
        ]);
        const last = stdout.trim().split("\n").at(-1)!;
        assert.match(last, /^[\w-]+\.[\w-]+\.[\w-]+$/, "auth token prints a JWT as its last line");
        jwt[tenant] = last;
      }
      env.REGISTRY_AUTH_URL = authUrl!;
    }
    const registry = spawnTabbify(
      ["registry", "--listen", "127.0.0.1:0", "--data", join(dir.path, "registry")],
      {
        REGISTRY_AUTH_URL: "",
        ...env,
      },
    );
    procs.push(registry);
    const [, base] = await registry.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const dockerConfig = join(dir.path, "docker-config");
    await mkdir(dockerConfig);
    const work = join(dir.path, "work");
    await mkdir(work);
    return { host: base!.replace("http://", ""), base: base!, jwt, dockerConfig, work, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function docker(stack: Stack, args: string[], input?: string) {
  return run("docker", args, {
    env: { ...process.env, DOCKER_CONFIG: stack.dockerConfig, DOCKER_BUILDKIT: "0" },
    timeoutMs: 180_000,
    ...(input === undefined ? {} : { input }),
  });
}

function skopeo(stack: Stack, tenant: string | null, args: string[]) {
  const creds = tenant ? ["--creds", `x:${stack.jwt[tenant]}`] : [];
  const [command, ...rest] = args;
  // --creds belongs to the subcommand; copy takes --src-creds/--dest-creds instead.
  const credArgs =
    command === "copy" && tenant
      ? ["--src-creds", `x:${stack.jwt[tenant]}`, "--dest-creds", `x:${stack.jwt[tenant]}`]
      : creds;
  return run("skopeo", [command!, ...credArgs, ...rest], { timeoutMs: 180_000 });
}

/** A registry bearer token for `scope`, got the way docker gets one (Basic auth with the JWT). */
async function registryToken(stack: Stack, tenant: string, scope: string): Promise<string> {
  const url = `${stack.base}/auth/token?service=tabbify-registry&scope=${encodeURIComponent(scope)}`;
  const res = await fetch(url, {
    headers: { authorization: `Basic ${Buffer.from(`x:${stack.jwt[tenant]}`).toString("base64")}` },
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { token: string; access_token: string; expires_in: number };
  assert.equal(body.token, body.access_token);
  return body.token;
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** The whole docker + skopeo round trip for one repository, as one tenant (or anonymous). */
async function roundTrip(stack: Stack, tenant: string | null, repo: string): Promise<string> {
  if (tenant) {
    await docker(stack, ["login", stack.host, "-u", "x", "--password-stdin"], stack.jwt[tenant]);
  }
  const tag = `${stack.host}/${repo}:v1`;
  await buildScratchImage(tag, { command: ["echo", `hello from ${repo}`] });
  // buildScratchImage uses the default docker config; pushing needs the login above.
  await docker(stack, ["push", tag]);
  await docker(stack, ["rmi", tag]);
  await docker(stack, ["pull", tag]);
  const { stdout } = await docker(stack, ["run", "--rm", "--network", "none", tag]);
  assert.equal(stdout, `hello from ${repo}\n`);
  await docker(stack, ["rmi", tag]);

  const inspect = JSON.parse(
    (await skopeo(stack, tenant, ["inspect", "--tls-verify=false", `docker://${tag}`])).stdout,
  ) as {
    Digest: string;
    Layers: string[];
  };
  assert.match(inspect.Digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(inspect.Layers.length, 1);

  const layout = join(stack.work, `${repo.replaceAll("/", "_")}-oci`);
  await skopeo(stack, tenant, ["copy", "--src-tls-verify=false", `docker://${tag}`, `oci:${layout}:v1`]);
  const copyTag = `${stack.host}/${repo}-copy:v2`;
  await skopeo(stack, tenant, ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${copyTag}`]);
  const copied = JSON.parse(
    (await skopeo(stack, tenant, ["inspect", "--tls-verify=false", `docker://${copyTag}`])).stdout,
  ) as { Digest: string; Layers: string[] };
  assert.deepEqual(copied.Layers, inspect.Layers, "the layer survives registry → OCI layout → registry");

  await skopeo(stack, tenant, ["delete", "--tls-verify=false", `docker://${copyTag}`]);
  await assert.rejects(
    skopeo(stack, tenant, ["inspect", "--tls-verify=false", `docker://${copyTag}`]),
    /manifest unknown|not found|MANIFEST_UNKNOWN|NAME_UNKNOWN/i,
  );
  return inspect.Digest;
}

/** Pushes a WASM component artifact (plain HTTP) whose subject is `subjectDigest` in `repo`. */
async function pushWasmArtifact(stack: Stack, repo: string, subjectDigest: string, token: string | null) {
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const wasm = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
  const config = Buffer.from("{}");
  for (const blob of [wasm, config]) {
    const res = await fetch(`${stack.base}/v2/${repo}/blobs/uploads/?digest=${sha256(blob)}`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/octet-stream", "content-length": String(blob.length) },
      body: blob,
    });
    assert.equal(res.status, 201, await res.text());
  }
  const subjectRes = await fetch(`${stack.base}/v2/${repo}/manifests/${subjectDigest}`, {
    method: "HEAD",
    headers: {
      ...auth,
      accept:
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
    },
  });
  assert.equal(subjectRes.status, 200);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.tabbify.wasm.component.v1",
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(config), size: config.length },
      layers: [{ mediaType: "application/wasm", digest: sha256(wasm), size: wasm.length }],
      subject: {
        mediaType: subjectRes.headers.get("content-type"),
        digest: subjectDigest,
        size: Number(subjectRes.headers.get("content-length")),
      },
      annotations: { "org.opencontainers.image.title": "hello.wasm" },
    }),
  );
  const digest = sha256(manifest);
  const put = await fetch(`${stack.base}/v2/${repo}/manifests/${digest}`, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/vnd.oci.image.manifest.v1+json" },
    body: manifest,
  });
  assert.equal(put.status, 201, await put.text());
  assert.equal(put.headers.get("oci-subject"), subjectDigest);

  const got = await fetch(`${stack.base}/v2/${repo}/manifests/${digest}`, {
    headers: { ...auth, accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(got.status, 200);
  assert.equal(sha256(Buffer.from(await got.arrayBuffer())), digest);
  const blob = await fetch(`${stack.base}/v2/${repo}/blobs/${sha256(wasm)}`, { headers: auth });
  assert.equal(blob.status, 200);
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(wasm));

  for (const filter of ["", "?artifactType=application%2Fvnd.tabbify.wasm.component.v1"]) {
    const refs = await fetch(`${stack.base}/v2/${repo}/referrers/${subjectDigest}${filter}`, {
      headers: auth,
    });
    assert.equal(refs.status, 200);
    const index = (await refs.json()) as { manifests: { digest: string; artifactType?: string }[] };
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, m.artifactType]),
      [[digest, "application/vnd.tabbify.wasm.component.v1"]],
    );
  }
  const none = await fetch(
    `${stack.base}/v2/${repo}/referrers/${subjectDigest}?artifactType=application%2Fother`,
    {
      headers: auth,
    },
  );
  assert.deepEqual(((await none.json()) as { manifests: unknown[] }).manifests, []);
}

before(async () => {
  requireCommand("skopeo", "skopeo");
  await ensureDockerd();
});

describe("registry with real clients, anonymous dev mode", { timeout: 600_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack(false);
  });
  after(() => stack?.stop());

  test("docker push/pull/run and skopeo copy/inspect/delete, then a WASM artifact with a subject", async () => {
    const digest = await roundTrip(stack, null, "dev/hello");
    await pushWasmArtifact(stack, "dev/hello", digest, null);
  });
});

describe("registry with real clients behind tabbify auth", { timeout: 600_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack(true);
  });
  after(() => stack?.stop());

  test("without credentials the registry challenges with a Bearer realm", async () => {
    const res = await fetch(`${stack.base}/v2/acme/app/tags/list`);
    assert.equal(res.status, 401);
    assert.match(
      res.headers.get("www-authenticate") ?? "",
      /^Bearer realm="[^"]+\/auth\/token",service="[^"]+"/,
    );
    await assert.rejects(
      run("skopeo", ["inspect", "--tls-verify=false", `docker://${stack.host}/acme/app:v1`]),
      /unauthorized|authentication required|401/i,
    );
  });

  test("acme: docker login/push/pull/run, skopeo copy/inspect/delete, a WASM artifact", async () => {
    const digest = await roundTrip(stack, "acme", "acme/hello");
    const token = await registryToken(stack, "acme", "repository:acme/hello:pull,push");
    await pushWasmArtifact(stack, "acme/hello", digest, token);
  });

  test("tenant isolation: acme cannot pull or push globex, with real clients and on the wire", async () => {
    // globex has an image of its own.
    const globexTag = `${stack.host}/globex/secret:v1`;
    await buildScratchImage(globexTag, { command: ["echo", "globex only"] });
    await docker(stack, ["login", stack.host, "-u", "x", "--password-stdin"], stack.jwt.globex);
    await docker(stack, ["push", globexTag]);
    await skopeo(stack, "globex", ["inspect", "--tls-verify=false", `docker://${globexTag}`]);

    // acme's JWT: skopeo cannot read it, docker cannot pull it or push into globex/.
    await assert.rejects(
      skopeo(stack, "acme", ["inspect", "--tls-verify=false", `docker://${globexTag}`]),
      /denied|forbidden|403|unauthorized/i,
    );
    await docker(stack, ["login", stack.host, "-u", "x", "--password-stdin"], stack.jwt.acme);
    await docker(stack, ["rmi", globexTag]);
    await assert.rejects(docker(stack, ["pull", globexTag]), /denied|forbidden|403|unauthorized/i);
    const intruder = `${stack.host}/globex/planted:v1`;
    await buildScratchImage(intruder, { command: ["echo", "planted"] });
    await assert.rejects(docker(stack, ["push", intruder]), /denied|forbidden|403|unauthorized/i);
    await docker(stack, ["rmi", intruder]);

    // On the wire: a valid acme token on a globex path is 403 DENIED, and nothing was stored.
    const token = await registryToken(stack, "acme", "repository:globex/secret:pull");
    for (const path of ["/v2/globex/secret/manifests/v1", "/v2/globex/secret/tags/list"]) {
      const res = await fetch(`${stack.base}${path}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 403, path);
      const body = (await res.json()) as { errors: { code: string }[] };
      assert.equal(body.errors[0]?.code, "DENIED", path);
    }
    // acme's catalog answers with acme's repositories only.
    const catalog = await fetch(`${stack.base}/v2/_catalog`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(catalog.status, 200);
    assert.doesNotMatch(await catalog.text(), /globex/);
    const globexToken = await registryToken(stack, "globex", "repository:globex/planted:pull");
    const planted = await fetch(`${stack.base}/v2/globex/planted/tags/list`, {
      headers: { authorization: `Bearer ${globexToken}` },
    });
    assert.equal(planted.status, 404, "acme's refused push left no repository in globex/");
  });
});
