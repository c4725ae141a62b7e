// The builder (issue 4 step 4) against real components: repositories served over smart HTTP by
// the GitHub double (a private one behind an installation token, a public one), the real
// dockerd, and our registry in-process with auth on (tenant JWT from our auth service → registry
// token from /auth/token) and anonymous. The HTTP routes are driven through the node's own
// HttpSupervisorClient, so both sides of the wire are proven to agree.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { copyFileSync, realpathSync } from "node:fs";
import { readdir, symlink } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { issueTenantToken } from "../src/auth/tenant-token.js";
import { Builder } from "../src/builder/builder.js";
import { registerBuildRoutes } from "../src/builder/routes.js";
import { schemaAjv } from "../src/core/api-docs.js";
import { isTabbifyError, type TabbifyError } from "../src/core/errors.js";
import { createLogger } from "../src/core/log.js";
import { HttpSupervisorClient } from "../src/pipeline/clients.js";
import type { BuildRequest } from "../src/pipeline/executor.js";
import { appJwt, installationToken } from "../src/pipeline/github.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { createGitRepo, type GitRepo, git } from "./support/git-repo.js";
import { type GithubDouble, startGithubDouble } from "./support/github-double.js";
import { ensureDockerd, requireCommand, run, tempDir } from "./support/tools.js";

const TENANT = "acme";
const APP_ID = "4242";
const INSTALLATION = 77;

let root: { path: string; remove(): Promise<void> };
let auth: FastifyInstance;
let tenantJwt: string;
let authRegistry: RunningRegistry;
let anonRegistry: RunningRegistry;
let github: GithubDouble;
let privateRepo: GitRepo;
let publicRepo: GitRepo;
let privateSha: string;
let publicSha: string;
let cloneToken: string;
let builder: Builder;
let builderWorkDir: string;
const builderLog: string[] = [];
const imagesToRemove = new Set<string>();

const hostOf = (url: string) => new URL(url).host;

const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  "COPY hello.txt /hello.txt",
  'ENTRYPOINT ["/bin/busybox"]',
  'CMD ["cat", "/hello.txt"]',
  "",
].join("\n");

// The failing step prints a marker first, so the tail can be checked for the step's own output.
const FAILING_DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  'RUN ["/bin/busybox", "sh", "-c", "echo failing-step-says-9f3a; exit 3"]',
  "",
].join("\n");

/** A registry token for the tenant, the way the pipeline mints one: /auth/token with the tenant JWT. */
async function registryToken(registry: RunningRegistry, appUuid: string): Promise<string> {
  const url = `${registry.url}/auth/token?service=tabbify-registry&scope=repository:${TENANT}/${appUuid}:pull,push`;
  const res = await fetch(url, {
    headers: { authorization: `Basic ${Buffer.from(`x:${tenantJwt}`).toString("base64")}` },
  });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

/** The registry's Docker-Content-Digest for a tag, or the status when it has none. */
async function manifestDigest(
  registry: RunningRegistry,
  appUuid: string,
  tag: string,
  bearer?: string,
): Promise<string | number> {
  const headers: Record<string, string> = {
    accept: [
      "application/vnd.docker.distribution.manifest.v2+json",
      "application/vnd.oci.image.manifest.v1+json",
      "application/vnd.oci.image.index.v1+json",
      "application/vnd.docker.distribution.manifest.list.v2+json",
    ].join(", "),
  };
  if (bearer) headers["authorization"] = `Bearer ${bearer}`;
  const res = await fetch(`${registry.url}/v2/${TENANT}/${appUuid}/manifests/${tag}`, {
    method: "HEAD",
    headers,
  });
  if (res.status !== 200) return res.status;
  return res.headers.get("docker-content-digest") ?? "no digest header";
}

function request(over: Partial<BuildRequest> & { app_uuid: string; registry: string }): BuildRequest {
  return {
    repo_url: github.cloneUrl(publicRepo.fullName),
    ref: publicSha,
    tenant: TENANT,
    image_repository: `${over.registry}/${TENANT}/${over.app_uuid}`,
    build_kind: "docker",
    context: ".",
    dockerfile: "Dockerfile",
    ...over,
  };
}

async function expectFailure(promise: Promise<unknown>, code: string): Promise<TabbifyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isTabbifyError(err), `expected a TabbifyError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the build succeeded`);
}

/** The docker image tags of a result, removed after the run so the daemon's disk does not fill. */
function remember(imageRef: string): void {
  imagesToRemove.add(imageRef);
}

before(async () => {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  root = await tempDir("tabbify-builder-test");

  const authDir = join(root.path, "auth");
  const key = await loadOrCreateSigningKey(authDir);
  auth = buildAuthApp({ key });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  tenantJwt = await issueTenantToken(key, { tenant: TENANT, subject: "ci", ttlSeconds: 3600 });
  authRegistry = await startRegistry({ dataDir: join(root.path, "registry-auth"), authUrl });
  anonRegistry = await startRegistry({ dataDir: join(root.path, "registry-anon") });

  const projectRoot = join(root.path, "git");
  privateRepo = await createGitRepo(projectRoot, "acme", "private-app");
  publicRepo = await createGitRepo(projectRoot, "acme", "public-app");
  const busybox = realpathSync("/bin/busybox");
  for (const repo of [privateRepo, publicRepo]) copyFileSync(busybox, join(repo.workDir, "busybox"));
  privateSha = await privateRepo.commit({
    Dockerfile: DOCKERFILE,
    "hello.txt": "hello from the private repo\n",
  });
  publicSha = await publicRepo.commit({
    Dockerfile: DOCKERFILE,
    "Dockerfile.fail": FAILING_DOCKERFILE,
    "hello.txt": "hello from the public repo\n",
  });
  // A symlink committed into the repository that points out of it.
  await symlink("/etc", join(publicRepo.workDir, "escape"));
  await git(["add", "-A"], publicRepo.workDir);
  await git(["commit", "--quiet", "-m", "symlink"], publicRepo.workDir);
  await git(["push", "--quiet", "origin", "HEAD:refs/heads/with-symlink"], publicRepo.workDir);

  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  github = await startGithubDouble({
    projectRoot,
    appId: APP_ID,
    appPublicKey: publicKey,
    installations: { [INSTALLATION]: [privateRepo.fullName] },
    privateRepos: [privateRepo.fullName],
  });
  cloneToken = (await installationToken(github.apiUrl, await appJwt(APP_ID, privateKey), INSTALLATION)).token;

  builderWorkDir = join(root.path, "builder");
  builder = new Builder({
    workDir: builderWorkDir,
    // The GitHub double and the registries listen on 127.0.0.1.
    repoPolicy: { allowPrivate: true },
    logger: createLogger("builder", "debug", (line) => builderLog.push(line)),
  });
});

after(async () => {
  for (const image of imagesToRemove) await run("docker", ["rmi", "-f", image]).catch(() => {});
  await github?.close();
  await authRegistry?.close();
  await anonRegistry?.close();
  await auth?.close();
  await root?.remove();
});

describe("Builder", () => {
  it("builds a private repo at its sha and pushes it to the registry with a tenant's registry token", async (t) => {
    const appUuid = randomUUID();
    const registry = hostOf(authRegistry.url);
    const pushToken = await registryToken(authRegistry, appUuid);
    const lines: string[] = [];
    let stageAtFirstBuildLine: string | undefined;
    const started = Date.now();
    const result = await builder.build(
      request({
        app_uuid: appUuid,
        registry,
        repo_url: github.cloneUrl(privateRepo.fullName),
        ref: privateSha,
        clone_token: cloneToken,
        push_token: pushToken,
        stable_tag: "latest",
      }),
      (line) => {
        if (stageAtFirstBuildLine === undefined && /^Step \d|^#\d/.test(line)) {
          stageAtFirstBuildLine = builder.progress(appUuid)?.stage;
        }
        lines.push(line);
      },
    );
    const elapsed = Date.now() - started;
    t.diagnostic(`clone + build + push of a FROM scratch image: ${elapsed} ms`);
    remember(result.image_ref);
    remember(`${registry}/${TENANT}/${appUuid}:latest`);

    assert.equal(result.commit_sha, privateSha);
    assert.equal(result.image_ref, `${registry}/${TENANT}/${appUuid}:${privateSha}`);
    assert.match(result.digest, /^sha256:[0-9a-f]{64}$/);
    // The registry refuses anonymous reads, and holds exactly what the builder reported.
    assert.equal(await manifestDigest(authRegistry, appUuid, privateSha), 401);
    assert.equal(await manifestDigest(authRegistry, appUuid, privateSha, pushToken), result.digest);
    assert.equal(await manifestDigest(authRegistry, appUuid, "latest", pushToken), result.digest);

    // Output was handed over while the build ran, not after it.
    assert.equal(stageAtFirstBuildLine, "build");
    assert.ok(
      lines.some((l) => /COPY hello.txt/.test(l)),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) => l.includes(result.digest)),
      "the push output names the digest",
    );
    for (const secret of [cloneToken, pushToken, tenantJwt]) {
      assert.ok(!lines.some((l) => l.includes(secret)), "a token reached the build log");
      assert.ok(!builderLog.some((l) => l.includes(secret)), "a token reached the logger");
    }
    const progress = builder.progress(appUuid);
    assert.equal(progress?.stage, "done");
    assert.equal(progress?.digest, result.digest);
    assert.deepEqual(await readdir(builderWorkDir), [], "the clone and docker config are removed");

    // The pushed image is the commit's: it runs and prints the committed file.
    const ran = await run("docker", ["run", "--rm", "--network", "none", result.image_ref]);
    assert.equal(ran.stdout, "hello from the private repo\n");
  });

  it("builds a public repo anonymously at a branch and pushes to an anonymous registry", async () => {
    const appUuid = randomUUID();
    const registry = hostOf(anonRegistry.url);
    const result = await builder.build(request({ app_uuid: appUuid, registry, ref: "main" }), () => {});
    remember(result.image_ref);
    // The branch resolves to its commit, and the tag is that sha, not the branch name.
    assert.equal(result.commit_sha, publicSha);
    assert.equal(result.image_ref, `${registry}/${TENANT}/${appUuid}:${publicSha}`);
    assert.equal(await manifestDigest(anonRegistry, appUuid, publicSha), result.digest);
  });

  it("a Dockerfile that fails is BUILD_FAILED, the user's fault, with the failing step's output", async () => {
    const appUuid = randomUUID();
    const lines: string[] = [];
    const err = await expectFailure(
      builder.build(
        request({ app_uuid: appUuid, registry: hostOf(anonRegistry.url), dockerfile: "Dockerfile.fail" }),
        (l) => lines.push(l),
      ),
      "BUILD_FAILED",
    );
    const detail = err.detail as { stage: string; user_fault: boolean; log_tail: string[] };
    assert.equal(detail.stage, "build");
    assert.equal(detail.user_fault, true);
    assert.ok(
      detail.log_tail.some((l) => l.includes("failing-step-says-9f3a")),
      `tail lacks the step's output:\n${detail.log_tail.join("\n")}`,
    );
    assert.ok(lines.some((l) => l.includes("failing-step-says-9f3a")));
    assert.equal(builder.progress(appUuid)?.stage, "failed");
    assert.equal(await manifestDigest(anonRegistry, appUuid, publicSha), 404);
    assert.deepEqual(await readdir(builderWorkDir), []);
  });

  it("a bad clone token is BUILD_CLONE_FAILED and the token appears nowhere", async () => {
    const appUuid = randomUUID();
    const badToken = "ghs_notARealTokenButSecret0123456789";
    const lines: string[] = [];
    const before = builderLog.length;
    const err = await expectFailure(
      builder.build(
        request({
          app_uuid: appUuid,
          registry: hostOf(anonRegistry.url),
          repo_url: github.cloneUrl(privateRepo.fullName),
          ref: privateSha,
          clone_token: badToken,
        }),
        (l) => lines.push(l),
      ),
      "BUILD_CLONE_FAILED",
    );
    const detail = err.detail as { stage: string; user_fault: boolean; log_tail: string[] };
    assert.equal(detail.stage, "clone");
    assert.equal(detail.user_fault, false);
    assert.ok(lines.length > 0, "git's complaint reaches the log");
    const everything = [
      err.message,
      JSON.stringify(err.detail),
      ...lines,
      ...builderLog.slice(before),
      JSON.stringify(builder.progress(appUuid)),
    ].join("\n");
    assert.ok(!everything.includes(badToken), everything);
    assert.ok(!everything.includes(Buffer.from(`x-access-token:${badToken}`).toString("base64")));
    // The double saw the token and refused it: the failure is the token's, not a wrong URL's.
    assert.ok(github.requests.some((r) => r.auth === "invalid" && r.status === 401));
  });

  it("a private repo without a token is BUILD_CLONE_FAILED", async () => {
    await expectFailure(
      builder.build(
        request({
          app_uuid: randomUUID(),
          registry: hostOf(anonRegistry.url),
          repo_url: github.cloneUrl(privateRepo.fullName),
          ref: privateSha,
        }),
        () => {},
      ),
      "BUILD_CLONE_FAILED",
    );
  });

  it("a context or Dockerfile outside the repository is refused before cloning", async () => {
    const served = github.requests.length;
    for (const paths of [
      { context: "../outside" },
      { context: "/etc" },
      { context: "sub/../../.." },
      { dockerfile: "../../Dockerfile" },
    ]) {
      const err = await expectFailure(
        builder.build(
          request({ app_uuid: randomUUID(), registry: hostOf(anonRegistry.url), ...paths }),
          () => {},
        ),
        "BUILD_CONTEXT_INVALID",
      );
      assert.equal((err.detail as { user_fault: boolean }).user_fault, true);
    }
    assert.equal(github.requests.length, served, "nothing was fetched");
  });

  it("a committed symlink leading out of the clone is refused as a context", async () => {
    await expectFailure(
      builder.build(
        request({
          app_uuid: randomUUID(),
          registry: hostOf(anonRegistry.url),
          ref: "with-symlink",
          context: "escape",
        }),
        () => {},
      ),
      "BUILD_CONTEXT_INVALID",
    );
  });

  it("builds of one app run one after another", async () => {
    const appUuid = randomUUID();
    const registry = hostOf(anonRegistry.url);
    const spans: { first: number; last: number }[] = [];
    const one = () => {
      const span = { first: 0, last: 0 };
      spans.push(span);
      return builder.build(request({ app_uuid: appUuid, registry }), () => {
        const now = performance.now();
        if (span.first === 0) span.first = now;
        span.last = now;
      });
    };
    const [a, b] = await Promise.all([one(), one()]);
    remember(a.image_ref);
    assert.equal(a.digest, b.digest, "the same commit builds the same image");
    const [x, y] = spans as [{ first: number; last: number }, { first: number; last: number }];
    assert.ok(x.last < y.first || y.last < x.first, `the builds overlapped: ${JSON.stringify(spans)}`);
  });
  it("keeps only the newest local images of an app", async () => {
    const appUuid = randomUUID();
    const registry = hostOf(anonRegistry.url);
    const pruning = new Builder({
      workDir: join(root.path, "builder-prune"),
      keepImages: 1,
      repoPolicy: { allowPrivate: true },
    });
    const first = await pruning.build(request({ app_uuid: appUuid, registry }), () => {});
    remember(first.image_ref);
    const newerSha = await publicRepo.commit({ "hello.txt": `hello again ${appUuid}\n` }, "newer", "newer");
    const second = await pruning.build(request({ app_uuid: appUuid, registry, ref: newerSha }), () => {});
    remember(second.image_ref);
    const listed = await run("docker", [
      "image",
      "ls",
      "--format",
      "{{.Tag}}",
      `${registry}/${TENANT}/${appUuid}`,
    ]);
    assert.deepEqual(listed.stdout.trim().split("\n"), [newerSha]);
    // Removing it locally leaves the pushed copy alone.
    assert.equal(await manifestDigest(anonRegistry, appUuid, publicSha), first.digest);
  });
});

describe("build routes through HttpSupervisorClient", () => {
  let app: FastifyInstance;
  let client: HttpSupervisorClient;
  let base: string;

  before(async () => {
    app = Fastify({ logger: false, ajv: schemaAjv });
    registerBuildRoutes(app, builder);
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    client = new HttpSupervisorClient({ baseUrl: base });
  });

  after(async () => {
    await app?.close();
  });

  it("streams the build's log lines and returns the pushed image", async () => {
    const appUuid = randomUUID();
    const registry = hostOf(authRegistry.url);
    const pushToken = await registryToken(authRegistry, appUuid);
    const lines: string[] = [];
    let stageAtFirstLine: string | undefined;
    const result = await client.build(
      request({
        app_uuid: appUuid,
        registry,
        repo_url: github.cloneUrl(privateRepo.fullName),
        ref: privateSha,
        clone_token: cloneToken,
        push_token: pushToken,
      }),
      (line) => {
        stageAtFirstLine ??= builder.progress(appUuid)?.stage;
        lines.push(line);
      },
    );
    remember(result.image_ref);
    assert.equal(result.commit_sha, privateSha);
    assert.equal(result.image_ref, `${registry}/${TENANT}/${appUuid}:${privateSha}`);
    assert.equal(await manifestDigest(authRegistry, appUuid, privateSha, pushToken), result.digest);
    assert.ok(stageAtFirstLine !== undefined && stageAtFirstLine !== "done", "lines came while building");
    assert.ok(lines.some((l) => /COPY hello.txt/.test(l)));
    assert.ok(!lines.some((l) => l.includes(cloneToken) || l.includes(pushToken)));

    const progress = await fetch(`${base}/v1/build/${appUuid}/progress`);
    assert.equal(progress.status, 200);
    const body = (await progress.json()) as { stage: string; digest: string; log_tail: string[] };
    assert.equal(body.stage, "done");
    assert.equal(body.digest, result.digest);
    assert.ok(body.log_tail.length > 0);
    assert.equal((await fetch(`${base}/v1/build/${randomUUID()}/progress`)).status, 404);
  });

  it("answers plain JSON {reff, digest, commit_sha} to a client that asks for JSON", async () => {
    const appUuid = randomUUID();
    const res = await fetch(`${base}/v1/build`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(request({ app_uuid: appUuid, registry: hostOf(anonRegistry.url) })),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    remember(String(body["reff"]));
    assert.equal(body["reff"], `${hostOf(anonRegistry.url)}/${TENANT}/${appUuid}:${publicSha}`);
    assert.equal(body["commit_sha"], publicSha);
    assert.equal(body["digest"], await manifestDigest(anonRegistry, appUuid, publicSha));
  });

  it("a failing Dockerfile comes back as BUILD_FAILED 422 with the step's output in the log", async () => {
    const lines: string[] = [];
    const err = await expectFailure(
      client.build(
        request({
          app_uuid: randomUUID(),
          registry: hostOf(anonRegistry.url),
          dockerfile: "Dockerfile.fail",
        }),
        (l) => lines.push(l),
      ),
      "BUILD_FAILED",
    );
    assert.deepEqual(err.detail, { status: 422, stage: "build", user_fault: true });
    assert.match(err.message, /at build/);
    assert.ok(lines.some((l) => l.includes("failing-step-says-9f3a")));
  });

  it("a bad clone token comes back as a 502 clone failure without the token", async () => {
    const badToken = "ghs_anotherBadTokenThatMustNotLeak42";
    const lines: string[] = [];
    const err = await expectFailure(
      client.build(
        request({
          app_uuid: randomUUID(),
          registry: hostOf(anonRegistry.url),
          repo_url: github.cloneUrl(privateRepo.fullName),
          ref: privateSha,
          clone_token: badToken,
        }),
        (l) => lines.push(l),
      ),
      "BUILD_FAILED",
    );
    assert.deepEqual(err.detail, { status: 502, stage: "clone", user_fault: false });
    assert.ok(![err.message, ...lines].join("\n").includes(badToken));
  });

  it("refusals before anything runs keep their status: bad body 400, escaping context 422", async () => {
    const bad = await fetch(`${base}/v1/build`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/x-ndjson" },
      body: JSON.stringify({ repo_url: "file:///etc", ref: "main" }),
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, "BUILD_REQUEST_INVALID");
    const err = await expectFailure(
      client.build(
        request({ app_uuid: randomUUID(), registry: hostOf(anonRegistry.url), context: "../x" }),
        () => {},
      ),
      "BUILD_FAILED",
    );
    assert.deepEqual(err.detail, { status: 422, stage: "validate", user_fault: true });
  });
  it("the stream says each stage and ends with the staged failure", async () => {
    const res = await fetch(`${base}/v1/build`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/x-ndjson" },
      body: JSON.stringify(
        request({
          app_uuid: randomUUID(),
          registry: hostOf(anonRegistry.url),
          dockerfile: "Dockerfile.fail",
        }),
      ),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/x-ndjson");
    const messages = (await res.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const stages = messages.filter((m) => m["type"] === "stage").map((m) => m["stage"]);
    assert.deepEqual([...new Set(stages)], ["queued", "clone", "build"]);
    assert.ok(
      messages.some((m) => m["type"] === "log" && String(m["line"]).includes("failing-step-says-9f3a")),
    );
    const last = messages.at(-1)!;
    assert.equal(last["type"], "error");
    assert.equal(last["status"], 422);
    assert.equal(last["code"], "BUILD_FAILED");
    assert.equal(last["user_fault"], true);
  });
});
