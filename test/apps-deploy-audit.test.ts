import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { nodeKeyActor } from "../src/node/apps-identity.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { call, fetchAudit, firstBrokenSeq, type WireEvent } from "./support/apps-api.js";
import { createGitRepo, type GitRepo } from "./support/git-repo.js";
import { type GithubDouble, startGithubDouble } from "./support/github-double.js";
import { sleep, tempDir } from "./support/tools.js";

/**
 * Deploys in the audit chain, through a real git repository behind the GitHub double: accepted
 * (from a signed push and from POST /v1/deploy, each with its actor), ended, and the app they
 * resolved registered on first sight under tabbify.toml's name. No supervisor is on the roster,
 * so each deploy fails at pick_builder, right after the app is known: fast, and still a real run.
 */

const KEY = "apps-deploy-audit-node-key";
const SECRET = "apps-deploy-audit-webhook-secret";
const ENV_VALUE = "env-value-that-must-not-leak";

describe("deploys in the audit chain", () => {
  let dir: { path: string; remove(): Promise<void> };
  let github: GithubDouble;
  let repo: GitRepo;
  let node: RunningNode;
  let sha: string;

  before(async () => {
    dir = await tempDir("tabbify-apps-deploy");
    const projectRoot = join(dir.path, "git");
    repo = await createGitRepo(projectRoot, "acme", "shop-repo");
    sha = await repo.commit({
      "tabbify.toml": `[app]\nname = "shop"\n\n[env]\nAPI_SECRET = "${ENV_VALUE}"\n`,
      Dockerfile: "FROM scratch\n",
    });
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    github = await startGithubDouble({ projectRoot, appId: "1", appPublicKey: publicKey, installations: {} });
    node = await startNode({
      port: 0,
      httpLogLevel: "silent",
      nodeKey: KEY,
      dataDir: join(dir.path, "node"),
      // The GitHub double and its git server listen on 127.0.0.1.
      deploy: { githubWebhookSecret: SECRET, githubApiUrl: github.apiUrl, allowPrivateRepos: true },
    });
  });
  after(async () => {
    await node?.close();
    await github?.close();
    await dir?.remove();
  });

  async function waitForEvent(match: (e: WireEvent) => boolean): Promise<WireEvent[]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const events = await fetchAudit(node.url, KEY, 100);
      if (events.some(match)) return events;
      if (Date.now() > deadline) throw new Error(`no such audit event:\n${JSON.stringify(events, null, 1)}`);
      await sleep(100);
    }
  }

  it("a signed push: accepted as github:<pusher>, the app registered by that actor, the end recorded", async () => {
    const body = JSON.stringify({
      ref: "refs/heads/main",
      before: `${"0".repeat(39)}1`,
      after: sha,
      repository: {
        full_name: "acme/shop-repo",
        clone_url: github.cloneUrl("acme/shop-repo"),
        default_branch: "main",
        private: false,
      },
      pusher: { name: "octocat", email: "octocat@example.com" },
    });
    const res = await fetch(`${node.url}/v1/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "delivery-apps-1",
        "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
      },
      body,
    });
    assert.equal(res.status, 202, await res.text());
    const events = await waitForEvent((e) => e.action === "deploy.finished");
    const accepted = events.find((e) => e.action === "deploy.accepted");
    assert.equal(accepted?.actor, "github:octocat");
    assert.equal((accepted?.after as { delivery_id?: string } | undefined)?.delivery_id, "delivery-apps-1");
    const created = events.find((e) => e.action === "app.create");
    assert.equal(created?.actor, "github:octocat");
    assert.equal(created?.subject, "app:shop");
    const finished = events.find((e) => e.action === "deploy.finished");
    assert.equal((finished?.after as { status?: string } | undefined)?.status, "failed");
    assert.equal(finished?.subject, accepted?.subject);

    const app = await call(node.url, "GET", "/api/v1/apps/shop", { token: KEY });
    assert.equal(app.status, 200);
    assert.equal(app.body.tenant, "acme");
    assert.equal(app.body.repo_url, github.cloneUrl("acme/shop-repo"));
  });

  it("POST /v1/deploy: accepted as the node key; a second sighting creates nothing new", async () => {
    const res = await call(node.url, "POST", "/v1/deploy", {
      token: KEY,
      body: { repo_url: github.cloneUrl("acme/shop-repo"), ref: "main", tenant: "acme" },
    });
    assert.equal(res.status, 202, res.text);
    const id = String(res.body.id);
    const events = await waitForEvent((e) => e.action === "deploy.finished" && e.subject === `deploy:${id}`);
    const accepted = events.find((e) => e.action === "deploy.accepted" && e.subject === `deploy:${id}`);
    assert.equal(accepted?.actor, nodeKeyActor(KEY));
    assert.equal(events.filter((e) => e.action === "app.create").length, 1);
    assert.equal(firstBrokenSeq(events), undefined);
    const text = JSON.stringify(events);
    for (const secret of [KEY, SECRET, ENV_VALUE])
      assert.ok(!text.includes(secret), "no secret in the chain");
  });

  it("kua's surface: POST /api/v1/apps/:app/deploy, progress with log tails, runtime-status", async () => {
    const bad = await call(node.url, "POST", "/api/v1/apps/shop/deploy", {
      token: KEY,
      body: { ref: "a..b" },
    });
    assert.equal(bad.status, 400);
    const res = await call(node.url, "POST", "/api/v1/apps/shop/deploy", { token: KEY, body: {} });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.ref, "main", "the app's branch by default");
    const id = String(res.body.id);
    await waitForEvent((e) => e.action === "deploy.finished" && e.subject === `deploy:${id}`);
    const progress = await call(node.url, "GET", "/api/v1/apps/shop/progress", { token: KEY });
    assert.equal(progress.status, 200, progress.text);
    assert.equal((progress.body.deploy as { id: string }).id, id);
    const steps = progress.body.steps as Array<{ step: string; state: string; log_tail: string[] }>;
    assert.equal(steps.find((s) => s.step === "fetch_manifest")?.state, "succeeded");
    const failed = steps.find((s) => s.step === "pick_builder");
    assert.equal(failed?.state, "failed");
    assert.ok((failed?.log_tail.length ?? 0) > 0);
    const runtime = await call(node.url, "GET", "/api/v1/apps/shop/runtime-status", { token: KEY });
    assert.equal(runtime.status, 200, runtime.text);
    assert.deepEqual(runtime.body.targets, []);
    assert.equal((await call(node.url, "GET", "/api/v1/apps/nope/progress", { token: KEY })).status, 404);
  });

  it("POST /webhook/forgejo is the Forgejo intake under kua's path", async () => {
    const res = await fetch(`${node.url}/webhook/forgejo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    const body = (await res.json()) as { code: string };
    assert.equal(
      res.status,
      503,
      "no FORGEJO_WEBHOOK_SECRET here: the intake says so, like /v1/webhooks/forgejo",
    );
    assert.equal(body.code, "WEBHOOK_SECRET_UNSET");
  });
});
