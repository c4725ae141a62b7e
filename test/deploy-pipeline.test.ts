// The deploy pipeline end to end (issue 4), with nothing mocked that runs here: a bare git repo
// served over smart HTTP by the GitHub double (which also mints installation tokens, finds a
// repository's installation and serves the contents API) and by the Forgejo double (contents API
// and clones with an access token), GitHub's own sample push payload rewritten to point at it and
// signed with the webhook secret, Forgejo's push payload signed its way, our auth service, our
// registry with auth on, the node, a `tabbify supervisor --builder` process with its runners, and
// the real dockerd. One stack serves every case, so the file stays within a few minutes on two
// cores.
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { copyFileSync, readdirSync, readFileSync, realpathSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { tenantRegistryAccess } from "../src/node/registry-access.js";
import type { DeployEvent, RegistryAccess } from "../src/pipeline/executor.js";
import { appJwt } from "../src/pipeline/github.js";
import { resolveAppUuid } from "../src/pipeline/plan.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { openStore } from "../src/store/index.js";
import {
  httpGet,
  removeImagesOf,
  type SupervisorUnderTest,
  startBuilderOnRoster,
} from "./runtime-plane-support.js";
import {
  type ForgejoDouble,
  forgejoDeliveryHeaders,
  forgejoPushPayload,
  startForgejoDouble,
} from "./support/forgejo-double.js";
import { createGitRepo, type GitRepo } from "./support/git-repo.js";
import { type GithubDouble, startGithubDouble } from "./support/github-double.js";
import { ensureDockerd, freePort, requireCommand, tempDir } from "./support/tools.js";

const SECRET = "It's a Secret to Everybody";
const NODE_KEY = "deploy-pipeline-node-key";
const SUPERVISOR_KEY = "deploy-pipeline-supervisor-key";
const APP_ID = "31337";
const INSTALLATION = 4711;
const OWNER = "Codertocat";
const REPO = "Hello-World";
const SUPERVISOR = "sup-builder";
/** The same repository as a private one, reachable only through the App's installation. */
const PRIVATE_REPO = "Secret-World";
const FORGEJO_SECRET = "forgejo-webhook-secret";
const FORGEJO_TOKEN = "forgejo-access-token-5e1f9a";

interface TargetResultBody {
  supervisor: string;
  runtime: string;
  success: boolean;
  app_ula: string;
  digest: string;
  error?: string;
}

/** `GET /v1/deploy/<id>/status`. */
interface StatusBody {
  id: string;
  state: string;
  done: boolean;
  success: boolean;
  app_uuid: string;
  image_ref: string;
  digest: string;
  results: TargetResultBody[];
  error?: { code: string; message: string; step: string };
}

interface DeliveryBody {
  delivery_id: string;
  outcome: string;
  reason?: string;
  deploy_id?: string;
}

/** What the webhook and deploy routes answer: an acceptance, an ignore or duplicate, or an error. */
interface ReplyBody {
  id?: string;
  status?: string;
  status_url?: string;
  delivery_id?: string;
  reason?: string;
  code?: string;
  error?: string;
  text?: string;
}

/** The parts of GitHub's sample push that are rewritten; the rest is sent as it is. */
interface PushExample {
  head_commit: Record<string, unknown>;
  installation: Record<string, unknown>;
  repository: Record<string, unknown> & { owner: Record<string, unknown> };
  [field: string]: unknown;
}

const require = createRequire(import.meta.url);
const examples = JSON.parse(
  readFileSync(require.resolve("@octokit/webhooks-examples/api.github.com/index.json"), "utf8"),
) as { name: string; examples: Record<string, unknown>[] }[];
const pushExamples = examples.find((e) => e.name === "push")!.examples;
const pingExample = examples.find((e) => e.name === "ping")!.examples[0]!;

// busybox httpd on the HOST:PORT the docker runtime sets.
const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  "COPY www /www",
  // PID 1 in a container ignores SIGTERM unless it traps it: the trap makes a swap's stop quick.
  `ENTRYPOINT ["/bin/busybox", "sh", "-c", "/bin/busybox httpd -f -p \${HOST}:\${PORT} -h /www & trap 'kill $!; exit 0' TERM; wait"]`,
  "",
].join("\n");
const FAILING_DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  'RUN ["/bin/busybox", "sh", "-c", "echo the-failing-step-says-7c1d; exit 4"]',
  "",
].join("\n");
const TOML = '[app]\nname = "hello-world"\n';

let root: { path: string; remove(): Promise<void> };
let auth: FastifyInstance;
let registry: RunningRegistry;
let github: GithubDouble;
let forgejo: ForgejoDouble;
let registryAccess: RegistryAccess;
let appPrivateKeyPem: string;
let repo: GitRepo;
let node: RunningNode;
let nodeData: string;
let supervisor: SupervisorUnderTest;
let registryHost: string;
let shaA: string;
let shaB: string;
let appUuid: string;
const deliveries: string[] = [];
let deliverySeq = 0;

function sign(body: Buffer | string): string {
  return `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
}

/** GitHub's sample branch push (examples[4]) pointed at the local repository and commit. */
function pushPayload(sha: string, before: string, branch = "main"): Record<string, unknown> {
  const body = structuredClone(pushExamples[4]!) as PushExample;
  body.ref = `refs/heads/${branch}`;
  body.before = before;
  body.after = sha;
  body.compare = `${github.url}/${OWNER}/${REPO}/compare/${before.slice(0, 12)}...${sha.slice(0, 12)}`;
  body.head_commit = { ...body.head_commit, id: sha, tree_id: sha };
  body.commits = [];
  body.installation = { ...body.installation, id: INSTALLATION };
  body.repository = {
    ...body.repository,
    name: REPO,
    full_name: `${OWNER}/${REPO}`,
    private: false,
    owner: { ...body.repository.owner, login: OWNER, name: OWNER },
    html_url: `${github.url}/${OWNER}/${REPO}`,
    url: `${github.url}/${OWNER}/${REPO}`,
    clone_url: github.cloneUrl(`${OWNER}/${REPO}`),
    git_url: github.cloneUrl(`${OWNER}/${REPO}`),
    default_branch: "main",
    master_branch: "main",
  };
  return body;
}

async function deliver(
  event: string,
  payload: unknown,
  opts: { deliveryId?: string; signature?: string | null; nodeUrl?: string; raw?: Buffer } = {},
): Promise<{ status: number; json: ReplyBody; deliveryId: string }> {
  const body = opts.raw ?? Buffer.from(JSON.stringify(payload));
  const deliveryId = opts.deliveryId ?? `e2e-${process.pid}-${++deliverySeq}`;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": deliveryId,
    "user-agent": "GitHub-Hookshot/e2e",
  };
  const signature = opts.signature === undefined ? sign(body) : opts.signature;
  if (signature !== null) headers["x-hub-signature-256"] = signature;
  const res = await fetch(`${opts.nodeUrl ?? node.url}/v1/webhooks/github`, {
    method: "POST",
    headers,
    body,
  });
  const text = await res.text();
  let json: ReplyBody = {};
  try {
    json = JSON.parse(text) as ReplyBody;
  } catch {
    json = { text };
  }
  return { status: res.status, json, deliveryId };
}

async function api<T = ReplyBody>(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const headers: Record<string, string> = { authorization: `Bearer ${NODE_KEY}` };
  let payload: string | undefined;
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const res = await fetch(`${node.url}${path}`, { method, headers, ...(payload ? { body: payload } : {}) });
  return { status: res.status, json: (await res.json()) as T };
}

/** Polls the status route until the deploy is done (200). */
async function waitDone(id: string | undefined, timeoutMs = 150_000): Promise<StatusBody> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { status, json } = await api<StatusBody>("GET", `/v1/deploy/${id}/status`);
    if (status === 200) return json;
    assert.equal(status, 202, JSON.stringify(json));
    await sleep(250);
  }
  throw new Error(`deploy ${id} not done within ${timeoutMs} ms\n${supervisor.log.slice(-3000)}`);
}

/** The deploy's events as the SSE route streams them (replay, then live until the closing event). */
async function sseEvents(id: string | undefined, after = 0): Promise<DeployEvent[]> {
  const res = await fetch(`${node.url}/v1/deploy/${id}/events`, {
    headers: { authorization: `Bearer ${NODE_KEY}`, "last-event-id": String(after) },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((frame) => frame.includes("data: "))
    .map((frame) => JSON.parse(frame.slice(frame.indexOf("data: ") + 6)) as DeployEvent);
}

/** GET through the node's /app/<uuid> door with a keep-alive client, as users reach the app. */
function appGet(path = "/", uuid = appUuid): Promise<{ status: number; body: string }> {
  return httpGet(new URL(node.url).host, `/app/${uuid}${path}`, 10_000);
}

/** The uuid a repository's app gets when nothing names one. */
function appUuidOf(repoUrl: string): string {
  return resolveAppUuid(undefined, undefined, repoUrl);
}

/** The node's delivery log by delivery id. */
async function deliveryLog(): Promise<Map<string, DeliveryBody>> {
  const { json } = await api<{ deliveries: DeliveryBody[] }>("GET", "/v1/webhooks/deliveries");
  return new Map(json.deliveries.map((d) => [d.delivery_id, d]));
}

/** Posts a delivery to `/v1/webhooks/forgejo` the way Forgejo sends it. */
async function deliverForgejo(
  payload: unknown,
  opts: { secret?: string; nodeUrl?: string } = {},
): Promise<{ status: number; json: ReplyBody }> {
  const body = Buffer.from(JSON.stringify(payload));
  const res = await fetch(`${opts.nodeUrl ?? node.url}/v1/webhooks/forgejo`, {
    method: "POST",
    headers: forgejoDeliveryHeaders(body, opts.secret ?? FORGEJO_SECRET),
    body,
  });
  return { status: res.status, json: (await res.json()) as ReplyBody };
}

before(async () => {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  root = await tempDir("tabbify-deploy-e2e");

  const authDir = join(root.path, "auth");
  auth = buildAuthApp({ key: await loadOrCreateSigningKey(authDir) });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
  registryHost = new URL(registry.url).host;

  const projectRoot = join(root.path, "git");
  repo = await createGitRepo(projectRoot, OWNER, REPO);
  copyFileSync(realpathSync("/bin/busybox"), join(repo.workDir, "busybox"));
  // The same bare repository under a second name, which the GitHub double keeps private.
  symlinkSync(repo.bareDir, join(projectRoot, OWNER, `${PRIVATE_REPO}.git`));
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  appPrivateKeyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  github = await startGithubDouble({
    projectRoot,
    appId: APP_ID,
    appPublicKey: publicKey,
    installations: { [INSTALLATION]: [`${OWNER}/${REPO}`, `${OWNER}/${PRIVATE_REPO}`] },
    privateRepos: [`${OWNER}/${PRIVATE_REPO}`],
  });
  // On the Forgejo double the repository is private: only FORGEJO_TOKEN reads and clones it.
  forgejo = await startForgejoDouble({
    projectRoot,
    tokens: { [FORGEJO_TOKEN]: [`${OWNER}/${REPO}`] },
    privateRepos: [`${OWNER}/${REPO}`],
  });
  registryAccess = await tenantRegistryAccess({ registryHost, authDataDir: authDir });

  nodeData = join(root.path, "node");
  node = await startNode({
    port: 0,
    dataDir: nodeData,
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: {
      githubWebhookSecret: SECRET,
      githubApiUrl: github.apiUrl,
      githubApp: { appId: APP_ID, privateKeyPem: appPrivateKeyPem },
      forgejoWebhookSecret: FORGEJO_SECRET,
      forgejoApiUrl: forgejo.apiUrl,
      forgejoToken: FORGEJO_TOKEN,
      registry: registryAccess,
      supervisorKey: SUPERVISOR_KEY,
      // The git doubles listen on 127.0.0.1.
      allowPrivateRepos: true,
    },
  });

  supervisor = await startBuilderOnRoster(node, SUPERVISOR, {
    nodeKey: NODE_KEY,
    supervisorKey: SUPERVISOR_KEY,
  });
});

after(async () => {
  await supervisor?.cleanup();
  for (const uuid of supervisor?.dockerApps ?? [])
    removeImagesOf(`${registryHost}/${OWNER.toLowerCase()}/${uuid}`);
  await node?.close();
  await registry?.close();
  await auth?.close();
  await github?.close();
  await forgejo?.close();
  await root?.remove();
});

describe("deploy pipeline", () => {
  it("push A → the app answers A at /app/<uuid>; push B → the same address answers B with no failed request", async () => {
    const supTags = node.coordinator.supervisors().find((s) => s.name === SUPERVISOR)!.tags;
    assert.ok(supTags.includes("builder") && supTags.includes("docker"), `tags: ${supTags.join(",")}`);

    shaA = await repo.commit({ Dockerfile: DOCKERFILE, "tabbify.toml": TOML, "www/index.html": "A\n" }, "A");
    const started = Date.now();
    const first = await deliver("push", pushPayload(shaA, "0".repeat(40)));
    assert.equal(first.status, 202, JSON.stringify(first.json));
    // Half of GitHub's 10 s: on a loaded 2-core machine the ack (one contents call, three fsyncs) took over 2 s.
    assert.ok(Date.now() - started < 5_000, "acknowledged well inside GitHub's 10 s");
    assert.equal(first.json.status_url, `/v1/deploy/${first.json.id}/status`);
    deliveries.push(first.deliveryId);

    const doneA = await waitDone(first.json.id);
    assert.equal(doneA.state, "succeeded", JSON.stringify(doneA));
    assert.equal(doneA.success, true, JSON.stringify(doneA));
    appUuid = doneA.app_uuid;
    supervisor.dockerApps.add(appUuid);
    assert.equal(doneA.image_ref, `${registryHost}/codertocat/${appUuid}:${shaA}`);
    assert.equal(doneA.results.length, 1);
    assert.deepEqual(
      { ...doneA.results[0], app_ula: undefined },
      { supervisor: SUPERVISOR, runtime: "docker", success: true, app_ula: undefined, digest: doneA.digest },
    );
    assert.match(doneA.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal((await appGet()).body, "A\n");
    // The target pulled the image from our registry (auth on) with the deploy's registry token.
    assert.match(supervisor.log, /pulled with a registry token/);

    // The referrers API lists the deployed digest's signature (by the tenant's build key, which
    // verify_signature checked) and its release manifest.
    const pullToken = await registryAccess.pullToken!("codertocat", appUuid);
    const artifactTypes = async () => {
      const res = await fetch(`${registry.url}/v2/codertocat/${appUuid}/referrers/${doneA.digest}`, {
        headers: { authorization: `Bearer ${pullToken}` },
      });
      const index = (await res.json()) as { manifests?: { artifactType?: string }[] };
      return (index.manifests ?? []).map((m) => m.artifactType).sort();
    };
    let types = await artifactTypes();
    for (let i = 0; i < 40 && types.length < 2; i++) {
      await sleep(250);
      types = await artifactTypes();
    }
    assert.deepEqual(types, [
      "application/vnd.dev.cosign.artifact.sig.v1+json",
      "application/vnd.tabbify.release.manifest.v1+json",
    ]);

    // The runner reports the pushed digest (the verify step checked the same).
    const described = await supervisor.call("GET", `/v1/apps/${appUuid}`);
    assert.equal(String(described.json.version).split("@").at(-1), doneA.digest);

    // Every step ran, in order, and the build's own output reached the events.
    const events = await sseEvents(first.json.id);
    const finishedSteps = events.filter((e) => e.type === "step_finished").map((e) => e.step);
    assert.deepEqual(finishedSteps, [
      "mint_token",
      "fetch_manifest",
      "pick_builder",
      "capability_check",
      "build_and_push",
      "verify_signature",
      "acquire_lock",
      "migrate",
      "fan_out",
      "verify",
    ]);
    assert.equal(events.at(-1)?.type, "deploy_finished");
    assert.ok(
      events.some((e) => e.step === "build_and_push" && e.type === "log"),
      "build log lines recorded",
    );
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i + 1),
    );
    // Resuming after seq 5 replays only what came later.
    assert.equal((await sseEvents(first.json.id, 5))[0]?.seq, 6);

    // Push B while a client polls the app without pause: every answer is a 200 from A or B.
    shaB = await repo.commit({ "www/index.html": "B\n" }, "B");
    const answers: { status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          answers.push(await appGet());
        } catch (err) {
          answers.push({ status: 0, body: (err as Error).message });
        }
      }
    })();
    const second = await deliver("push", pushPayload(shaB, shaA));
    assert.equal(second.status, 202, JSON.stringify(second.json));
    deliveries.push(second.deliveryId);
    const doneB = await waitDone(second.json.id);
    polling = false;
    await poller;
    assert.equal(doneB.success, true, JSON.stringify(doneB));
    assert.equal(doneB.app_uuid, appUuid, "the same repository keeps its app uuid");
    assert.equal(doneB.results[0]?.app_ula, doneA.results[0]?.app_ula, "and its address");
    assert.notEqual(doneB.digest, doneA.digest);
    const failed = answers.filter((a) => a.status !== 200 || (a.body !== "A\n" && a.body !== "B\n"));
    assert.deepEqual(failed, [], `${failed.length} of ${answers.length} requests failed during the swap`);
    assert.ok(answers.length > 20, `the poller ran (${answers.length} requests)`);
    const firstB = answers.findIndex((a) => a.body === "B\n");
    assert.ok(firstB >= 0, "B was served before the deploy reported done");
    assert.ok(
      answers.slice(firstB).every((a) => a.body === "B\n"),
      "A never answers again once B did",
    );
    assert.equal((await appGet()).body, "B\n");
  });

  it("a redelivered push is not deployed twice; ping answers 200", async () => {
    const before = (await api<{ deploys: StatusBody[] }>("GET", "/v1/deploys")).json.deploys.length;
    const again = await deliver("push", pushPayload(shaB, shaA), { deliveryId: deliveries[1] });
    assert.equal(again.status, 200, JSON.stringify(again.json));
    assert.equal(again.json.status, "duplicate");
    assert.ok(again.json.id, "names the deploy the first delivery started");
    assert.equal((await api<{ deploys: StatusBody[] }>("GET", "/v1/deploys")).json.deploys.length, before);

    // The attack: push A's signed body replayed under a fresh delivery id (the id is not signed).
    const replayA = await deliver("push", pushPayload(shaA, "0".repeat(40)));
    assert.equal(replayA.status, 200, JSON.stringify(replayA.json));
    assert.equal(replayA.json.status, "duplicate");
    // A new body (another `before`) whose `after` is what the app runs: nothing to redeploy.
    const same = await deliver("push", pushPayload(shaB, shaB));
    assert.equal(same.status, 200, JSON.stringify(same.json));
    assert.equal(same.json.status, "already_deployed");
    assert.equal(same.json.id, again.json.id, "names the deploy that runs B");
    assert.equal((await api<{ deploys: StatusBody[] }>("GET", "/v1/deploys")).json.deploys.length, before);
    assert.equal((await appGet()).body, "B\n", "the old commit was not redeployed");

    const ping = await deliver("ping", pingExample);
    assert.equal(ping.status, 200);
    assert.equal(ping.json.status, "pong");
  });

  it("pushes to another branch and tag deletions are acknowledged, ignored, and the reason recorded", async () => {
    const other = await deliver("push", pushPayload(shaB, shaA, "feature-x"));
    assert.equal(other.status, 200);
    assert.equal(other.json.status, "ignored");
    assert.match(other.json.reason ?? "", /feature-x ignored: the app deploys from main/);

    const tagDelete = structuredClone(pushExamples[1]!);
    const tag = await deliver("push", tagDelete);
    assert.equal(tag.status, 200);
    assert.match(tag.json.reason ?? "", /tag simple-tag deleted/);

    const byId = await deliveryLog();
    assert.equal(byId.get(other.deliveryId)?.outcome, "ignored");
    assert.match(byId.get(other.deliveryId)?.reason ?? "", /feature-x/);
    assert.match(byId.get(tag.deliveryId)?.reason ?? "", /tag simple-tag deleted/);
    assert.equal(byId.get(deliveries[0]!)?.outcome, "deployed");
  });

  it("signatures: no secret 503, missing or bad 401, a body altered after signing 401", async () => {
    const bare = await startNode({ port: 0, dataDir: join(root.path, "bare-node"), httpLogLevel: "silent" });
    try {
      const noSecret = await deliver("push", pushPayload(shaB, shaA), { nodeUrl: bare.url });
      assert.equal(noSecret.status, 503);
      assert.equal(noSecret.json.code, "WEBHOOK_SECRET_UNSET");
    } finally {
      await bare.close();
    }
    const payload = pushPayload(shaB, shaA);
    const missing = await deliver("push", payload, { signature: null });
    assert.equal(missing.status, 401);
    assert.equal(missing.json.code, "WEBHOOK_SIGNATURE_INVALID");
    const wrong = await deliver("push", payload, {
      signature: `sha256=${createHmac("sha256", "another secret").update(JSON.stringify(payload)).digest("hex")}`,
    });
    assert.equal(wrong.status, 401);
    const raw = Buffer.from(JSON.stringify(payload));
    const signature = sign(raw);
    const altered = Buffer.from(raw.toString().replace(shaB, shaA));
    const tampered = await deliver("push", payload, { raw: altered, signature });
    assert.equal(tampered.status, 401);
    assert.match(tampered.json.error ?? "", /does not match the body/);
    // GitHub's documented test vector for X-Hub-Signature-256: the signature passes, and the
    // body ("Hello, World!") is then refused as not JSON, not as unsigned.
    const vector = await deliver("push", undefined, {
      raw: Buffer.from("Hello, World!"),
      signature: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    });
    assert.equal(vector.status, 400);
    assert.equal(vector.json.code, "WEBHOOK_PAYLOAD_INVALID");
  });

  it("bad input ends in a clear reason and the node keeps serving: invalid JSON, a payload over 25 MB", async () => {
    const notJson = await deliver("push", undefined, { raw: Buffer.from("{not json") });
    assert.equal(notJson.status, 400);
    assert.match(notJson.json.error ?? "", /not JSON/);

    const huge = Buffer.alloc(25 * 1024 * 1024 + 1024, 0x20);
    const tooLarge = await deliver("push", undefined, { raw: huge, signature: "sha256=00" });
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.json.code, "PAYLOAD_TOO_LARGE");

    const badJson = await api("POST", "/v1/deploy", "{nope");
    assert.equal(badJson.status, 400);
    const missingRef = await api("POST", "/v1/deploy", {
      repo_url: github.cloneUrl(`${OWNER}/${REPO}`),
      tenant: "x",
    });
    assert.equal(missingRef.status, 400);
    assert.match(missingRef.json.error ?? "", /ref is required/);
    const badTarget = await api("POST", "/v1/deploy", {
      repo_url: github.cloneUrl(`${OWNER}/${REPO}`),
      ref: "main",
      tenant: "codertocat",
      targets: [{ supervisor: SUPERVISOR, runtime: "vm" }],
    });
    assert.equal(badTarget.status, 400);
    assert.match(badTarget.json.error ?? "", /targets\[0\]\.runtime/);
    assert.equal((await fetch(`${node.url}/health`)).status, 200);
    const unknown = await api("GET", "/v1/deploy/0190aaaa-0000-7000-8000-000000000000/status");
    assert.equal(unknown.status, 404);
  });

  it("fatal vs per-target: a capability mismatch aborts before any build; an unreachable target fails alone", async () => {
    const repoUrl = github.cloneUrl(`${OWNER}/${REPO}`);
    const mismatch = await api("POST", "/v1/deploy", {
      repo_url: repoUrl,
      ref: shaB,
      tenant: "codertocat",
      targets: [{ supervisor: SUPERVISOR, runtime: "firecracker" }],
    });
    assert.equal(mismatch.status, 202);
    const doneMismatch = await waitDone(mismatch.json.id);
    assert.equal(doneMismatch.state, "failed");
    assert.equal(doneMismatch.success, false);
    assert.equal(doneMismatch.error?.code, "CAPABILITY_MISMATCH");
    assert.match(doneMismatch.error?.message ?? "", new RegExp(`${SUPERVISOR} cannot run firecracker`));
    const mismatchEvents = await sseEvents(mismatch.json.id);
    assert.ok(!mismatchEvents.some((e) => e.step === "build_and_push"), "no build started");

    // A docker-capable supervisor on the roster whose address nobody answers.
    const deadPort = await freePort();
    node.coordinator.register({
      kind: "supervisor",
      name: "sup-ghost",
      address: `http://127.0.0.1:${deadPort}`,
      ula: "127.0.0.1",
      version: "0.0.0",
      tags: ["supervisor", "docker"],
    });
    const split = await api("POST", "/v1/deploy", {
      repo_url: repoUrl,
      ref: shaB,
      tenant: "codertocat",
      targets: [
        { supervisor: SUPERVISOR, runtime: "docker" },
        { supervisor: "sup-ghost", runtime: "docker" },
      ],
    });
    assert.equal(split.status, 202);
    const doneSplit = await waitDone(split.json.id);
    assert.equal(doneSplit.state, "succeeded", JSON.stringify(doneSplit));
    assert.equal(doneSplit.success, false, "one target failed");
    const bySupervisor = new Map(doneSplit.results.map((r) => [r.supervisor, r]));
    assert.equal(bySupervisor.get(SUPERVISOR)?.success, true, JSON.stringify(doneSplit.results));
    assert.equal(bySupervisor.get("sup-ghost")?.success, false);
    assert.match(bySupervisor.get("sup-ghost")?.error ?? "", /unreachable/);
    assert.equal((await appGet()).body, "B\n", "the reachable target still serves");
  });

  it("a tabbify.toml with a type error and a failing Dockerfile each fail with a recorded reason", async () => {
    const repoUrl = github.cloneUrl(`${OWNER}/${REPO}`);
    await repo.commit(
      { "tabbify.toml": '[app]\nname = "hello-world"\n\n[runtime]\nmemory_mb = "lots"\n' },
      "bad toml",
      "broken-toml",
    );
    const badToml = await api("POST", "/v1/deploy", {
      repo_url: repoUrl,
      ref: "broken-toml",
      tenant: "codertocat",
    });
    const doneToml = await waitDone(badToml.json.id);
    assert.equal(doneToml.state, "failed");
    assert.equal(doneToml.error?.code, "TABBIFY_TOML_INVALID");
    assert.match(doneToml.error?.message ?? "", /^tabbify\.toml:5:\d+: .*memory_mb.*integer/);
    assert.equal(doneToml.error?.step, "fetch_manifest");

    await repo.commit(
      { "tabbify.toml": TOML, Dockerfile: FAILING_DOCKERFILE },
      "bad docker",
      "broken-docker",
    );
    const badDocker = await api("POST", "/v1/deploy", {
      repo_url: repoUrl,
      ref: "broken-docker",
      tenant: "codertocat",
    });
    const doneDocker = await waitDone(badDocker.json.id);
    assert.equal(doneDocker.state, "failed");
    assert.equal(doneDocker.error?.code, "BUILD_FAILED");
    assert.equal(doneDocker.error?.step, "build_and_push");
    assert.deepEqual(doneDocker.results, []);
    const events = await sseEvents(badDocker.json.id);
    assert.ok(
      events.some((e) => e.type === "log" && e.message?.includes("the-failing-step-says-7c1d")),
      "the failing step's own output is in the events",
    );
    assert.equal((await appGet()).body, "B\n", "the running version keeps serving");
    assert.equal((await fetch(`${node.url}/health`)).status, 200);
  });

  it("Forgejo: a signed push deploys through the contents API and clone with FORGEJO_TOKEN; bad signature 401; no secret 503", async () => {
    const repoUrl = forgejo.cloneUrl(`${OWNER}/${REPO}`);
    // Private there: without the token neither the contents API nor git lets anyone in.
    const anonymous = await fetch(
      `${forgejo.apiUrl}/repos/${OWNER}/${REPO}/contents/tabbify.toml?ref=${shaB}`,
    );
    assert.equal(anonymous.status, 404);
    await anonymous.body?.cancel();

    const push = forgejoPushPayload({
      base: forgejo.url,
      fullName: `${OWNER}/${REPO}`,
      branch: "main",
      before: shaA,
      after: shaB,
      private: true,
    });
    const bad = await deliverForgejo(push, { secret: "not the secret" });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.code, "WEBHOOK_SIGNATURE_INVALID");
    const bare = await startNode({
      port: 0,
      dataDir: join(root.path, "bare-forgejo-node"),
      httpLogLevel: "silent",
    });
    try {
      const noSecret = await deliverForgejo(push, { nodeUrl: bare.url });
      assert.equal(noSecret.status, 503);
      assert.equal(noSecret.json.code, "WEBHOOK_SECRET_UNSET");
    } finally {
      await bare.close();
    }

    const before = forgejo.requests.length;
    const accepted = await deliverForgejo(push);
    assert.equal(accepted.status, 202, JSON.stringify(accepted.json));
    const done = await waitDone(accepted.json.id);
    assert.equal(done.success, true, JSON.stringify(done));
    assert.equal(done.app_uuid, appUuidOf(repoUrl));
    assert.notEqual(done.app_uuid, appUuid, "another forge's repository is another app");
    supervisor.dockerApps.add(done.app_uuid);
    assert.equal(done.image_ref, `${registryHost}/codertocat/${done.app_uuid}:${shaB}`);
    assert.equal((await appGet("/", done.app_uuid)).body, "B\n");

    // Replayed under a fresh delivery id: a duplicate. A new push of the commit it runs: already deployed.
    const replay = await deliverForgejo(push);
    assert.equal(replay.json.status, "duplicate", JSON.stringify(replay.json));
    const samePush = forgejoPushPayload({
      base: forgejo.url,
      fullName: `${OWNER}/${REPO}`,
      branch: "main",
      before: shaB,
      after: shaB,
      private: true,
    });
    const same = await deliverForgejo(samePush);
    assert.equal(same.status, 200, JSON.stringify(same.json));
    assert.equal(same.json.status, "already_deployed");
    assert.equal(same.json.id, done.id);

    const events = await sseEvents(done.id);
    assert.match(
      events.find((e) => e.step === "mint_token" && e.type === "step_finished")?.message ?? "",
      /configured access token/,
    );
    const served = forgejo.requests.slice(before);
    const contentsCalls = served.filter((r) => r.path.startsWith(`/api/v1/repos/${OWNER}/${REPO}/contents/`));
    assert.ok(contentsCalls.length > 0, "tabbify.toml was read through Forgejo's contents API");
    assert.ok(
      contentsCalls.every((r) => r.auth === "token" && r.status === 200),
      JSON.stringify(contentsCalls),
    );
    const gitCalls = served.filter((r) => r.path.startsWith(`/${OWNER}/${REPO}.git/`));
    assert.ok(
      gitCalls.some((r) => r.path.endsWith("/git-upload-pack") && r.status === 200),
      JSON.stringify(gitCalls),
    );
    assert.ok(
      gitCalls.every((r) => r.auth === "basic"),
      "every clone request carried the token",
    );
  });

  it("a private GitHub repository through POST /v1/deploy: the App's installation is looked up, its token reads and clones", async () => {
    const fullName = `${OWNER}/${PRIVATE_REPO}`;
    const jwt = await appJwt(APP_ID, appPrivateKeyPem);
    const notInstalled = await fetch(`${github.apiUrl}/repos/${OWNER}/Not-Installed/installation`, {
      headers: { authorization: `Bearer ${jwt}`, accept: "application/vnd.github+json" },
    });
    assert.equal(notInstalled.status, 404);
    await notInstalled.body?.cancel();
    const unsigned = await fetch(`${github.apiUrl}/repos/${fullName}/installation`);
    assert.equal(unsigned.status, 401);
    await unsigned.body?.cancel();

    const before = github.requests.length;
    const repoUrl = github.cloneUrl(fullName);
    const accepted = await api("POST", "/v1/deploy", { repo_url: repoUrl, ref: shaB, tenant: "codertocat" });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.json));
    const done = await waitDone(accepted.json.id);
    assert.equal(done.success, true, JSON.stringify(done));
    supervisor.dockerApps.add(done.app_uuid);
    assert.equal(done.app_uuid, appUuidOf(repoUrl));
    assert.equal((await appGet("/", done.app_uuid)).body, "B\n");

    const served = github.requests.slice(before);
    const lookup = served.find((r) => r.path === `/repos/${fullName}/installation`);
    assert.deepEqual(lookup && { auth: lookup.auth, status: lookup.status }, {
      auth: "app-jwt",
      status: 200,
    });
    const minted = served.find((r) => r.path === `/app/installations/${INSTALLATION}/access_tokens`);
    assert.equal(minted?.status, 201);
    const reads = served.filter(
      (r) => r.path.startsWith(`/repos/${fullName}/contents/`) || r.path.startsWith(`/${fullName}.git/`),
    );
    assert.ok(
      reads.some((r) => r.path.endsWith("/git-upload-pack")),
      "the builder cloned it",
    );
    assert.ok(
      reads.every((r) => r.auth === "installation-token" || r.status === 401),
      `private reads carry the installation token: ${JSON.stringify(reads)}`,
    );
  });

  it("[app] branch: a push to main is ignored with the reason recorded when the app deploys from release; a push to release deploys", async () => {
    const shaC = await repo.commit(
      {
        Dockerfile: DOCKERFILE,
        "tabbify.toml": `${TOML}branch = "release"\n`,
        "www/index.html": "C\n",
      },
      "C",
      "release",
    );
    const toMain = await deliver("push", pushPayload(shaC, shaB, "main"));
    assert.equal(toMain.status, 200, JSON.stringify(toMain.json));
    assert.equal(toMain.json.status, "ignored");
    assert.match(toMain.json.reason ?? "", /push to branch main ignored: the app deploys from release/);
    const note = (await deliveryLog()).get(toMain.deliveryId);
    assert.equal(note?.outcome, "ignored");
    assert.match(note?.reason ?? "", /deploys from release/);
    assert.equal((await appGet()).body, "B\n", "nothing was deployed");

    const toRelease = await deliver("push", pushPayload(shaC, shaB, "release"));
    assert.equal(toRelease.status, 202, JSON.stringify(toRelease.json));
    const done = await waitDone(toRelease.json.id);
    assert.equal(done.success, true, JSON.stringify(done));
    assert.equal(done.app_uuid, appUuid);
    assert.equal((await appGet()).body, "C\n");
  });

  it("a failed pull at the supervisor's API: unknown manifest 404, digest mismatch 409, refused by the registry 502", async () => {
    const target = "0190bbbb-0000-7000-8000-00000000c0de";
    const pullToken = await registryAccess.pullToken!("codertocat", appUuid);
    const missing = await supervisor.call("POST", `/v1/apps/${target}/deploy`, {
      ref: `${registryHost}/codertocat/${appUuid}:${"f".repeat(40)}`,
      runtime: "docker",
      registry_token: pullToken,
    });
    assert.equal(missing.status, 404, JSON.stringify(missing.json));
    assert.equal(missing.json.code, "IMAGE_NOT_FOUND");
    assert.match(String(missing.json.error), /manifest unknown|not found/);

    const mismatch = await supervisor.call("POST", `/v1/apps/${target}/deploy`, {
      ref: `${registryHost}/codertocat/${appUuid}:${shaB}`,
      runtime: "docker",
      registry_token: pullToken,
      digest: `sha256:${"0".repeat(64)}`,
    });
    assert.equal(mismatch.status, 409, JSON.stringify(mismatch.json));
    assert.equal(mismatch.json.code, "DIGEST_MISMATCH");

    // A token for another tenant's repository: the registry refuses it.
    const otherToken = await registryAccess.pullToken!("someone-else", appUuid);
    const refused = await supervisor.call("POST", `/v1/apps/${target}/deploy`, {
      ref: `${registryHost}/codertocat/${appUuid}:${"e".repeat(40)}`,
      runtime: "docker",
      registry_token: otherToken,
    });
    assert.equal(refused.status, 502, JSON.stringify(refused.json));
    assert.equal(refused.json.code, "IMAGE_PULL_FAILED");
    for (const reply of [missing, mismatch, refused]) {
      const text = JSON.stringify(reply.json);
      assert.ok(!text.includes(pullToken) && !text.includes(otherToken), "no token in the error");
    }
    assert.equal((await supervisor.call("GET", `/v1/apps/${target}`)).status, 404, "no runner was made");
  });

  it("deploy records survive a node restart, and no token reaches a record, event or runner record", async () => {
    const { json } = await api<{ deploys: StatusBody[] }>("GET", "/v1/deploys");
    // A second connection to the node's file sees what the node committed.
    const reopened = await openStore({ engine: "sqlite", file: join(nodeData, "node.db") });
    try {
      for (const d of json.deploys) {
        const record = await reopened.db
          .selectFrom("deploys")
          .selectAll()
          .where("id", "=", d.id)
          .executeTakeFirst();
        assert.ok(record, `deploy ${d.id} is on disk`);
        assert.equal(record.status, d.state);
        const last = await reopened.db
          .selectFrom("deploy_events")
          .select("type")
          .where("deploy_id", "=", d.id)
          .orderBy("seq", "desc")
          .executeTakeFirst();
        assert.equal(last?.type, d.state === "failed" ? "deploy_failed" : "deploy_finished");
      }
    } finally {
      await reopened.close();
    }
    const tokens = [...github.issuedTokens(), FORGEJO_TOKEN];
    assert.ok(tokens.length >= 2, "installation tokens were minted");
    const files = [
      ...readdirSync(nodeData)
        .filter((f) => f.startsWith("node.db"))
        .map((f) => join(nodeData, f)),
      ...readdirSync(join(supervisor.dataDir, "runners"))
        .filter((f) => f.endsWith(".json") || f.endsWith(".log"))
        .map((f) => join(supervisor.dataDir, "runners", f)),
    ];
    assert.ok(files.length >= 1, "the node's store is on disk");
    for (const file of files) {
      // latin1 reads any bytes (the store is binary) and keeps ASCII tokens searchable.
      const text = readFileSync(file, "latin1");
      for (const token of tokens) assert.ok(!text.includes(token), `${file} holds a forge token`);
      assert.ok(!/registry_?token/i.test(text), `${file} mentions a registry token`);
      assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/.test(text), `${file} holds a JWT`);
    }
  });
});
