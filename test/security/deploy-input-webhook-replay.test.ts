/**
 * Webhook replay: the delivery id (`X-GitHub-Delivery`, `X-Forgejo-Delivery`) is not covered by
 * the signature, so an attacker holding one captured, validly signed push body can resend it
 * with a fresh id. The node remembers the SHA-256 of every accepted signed body and answers a
 * repeat with 200 `duplicate` whatever its delivery id, also after a restart; no deploy starts.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../../src/node/server.js";
import type { ForgejoDouble } from "../support/forgejo-double.js";
import { forgejoDeliveryHeaders, forgejoPushPayload, startForgejoDouble } from "../support/forgejo-double.js";
import { createGitRepo, type GitRepo } from "../support/git-repo.js";
import { type GithubDouble, startGithubDouble } from "../support/github-double.js";
import { requireCommand, tempDir } from "../support/tools.js";

const SECRET = "replay-test-github-secret";
const FORGEJO_SECRET = "replay-test-forgejo-secret";
const NODE_KEY = "replay-test-node-key-0123456789abcdef";
const OWNER = "acme";
const REPO = "hello";

let root: { path: string; remove(): Promise<void> };
let repo: GitRepo;
let github: GithubDouble;
let forgejo: ForgejoDouble;
let node: RunningNode;
let sha: string;

async function openNode(): Promise<RunningNode> {
  return startNode({
    port: 0,
    dataDir: join(root.path, "node"),
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: {
      githubWebhookSecret: SECRET,
      githubApiUrl: github.apiUrl,
      forgejoWebhookSecret: FORGEJO_SECRET,
      forgejoApiUrl: forgejo.apiUrl,
      allowPrivateRepos: true,
    },
  });
}

function githubPush(after: string, before = "0".repeat(40)): Buffer {
  return Buffer.from(
    JSON.stringify({
      ref: "refs/heads/main",
      before,
      after,
      repository: {
        full_name: `${OWNER}/${REPO}`,
        clone_url: github.cloneUrl(`${OWNER}/${REPO}`),
        default_branch: "main",
        private: false,
      },
      pusher: { name: OWNER, email: "a@example.invalid" },
    }),
  );
}

async function deliverGithub(body: Buffer, deliveryId = randomUUID()) {
  const res = await fetch(`${node.url}/v1/webhooks/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": deliveryId,
      "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
    },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function deliverForgejo(body: Buffer, deliveryId = randomUUID()) {
  const res = await fetch(`${node.url}/v1/webhooks/forgejo`, {
    method: "POST",
    headers: forgejoDeliveryHeaders(body, FORGEJO_SECRET, "push", deliveryId),
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function deployCount(): Promise<number> {
  const res = await fetch(`${node.url}/v1/deploys`, { headers: { authorization: `Bearer ${NODE_KEY}` } });
  return ((await res.json()) as { deploys: unknown[] }).deploys.length;
}

before(async () => {
  requireCommand("git", "git");
  root = await tempDir("tabbify-replay");
  const projectRoot = join(root.path, "git");
  repo = await createGitRepo(projectRoot, OWNER, REPO);
  sha = await repo.commit({ "tabbify.toml": '[app]\nname = "hello"\n', Dockerfile: "FROM scratch\n" }, "A");
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  github = await startGithubDouble({ projectRoot, appId: "1", appPublicKey: publicKey, installations: {} });
  forgejo = await startForgejoDouble({ projectRoot, tokens: {} });
  node = await openNode();
});

after(async () => {
  await node?.close();
  await github?.close();
  await forgejo?.close();
  await root?.remove();
});

describe("a replayed signed webhook body is a duplicate whatever its delivery id", () => {
  it("GitHub: the same body under a fresh X-GitHub-Delivery deploys nothing, also after a restart", async () => {
    const body = githubPush(sha);
    const first = await deliverGithub(body);
    assert.equal(first.status, 202, JSON.stringify(first.json));
    const deploys = await deployCount();

    const replay = await deliverGithub(body);
    assert.equal(replay.status, 200, JSON.stringify(replay.json));
    assert.equal(replay.json.status, "duplicate");
    assert.equal(await deployCount(), deploys, "no deploy started");

    await node.close();
    node = await openNode();
    const afterRestart = await deliverGithub(body);
    assert.equal(afterRestart.status, 200, JSON.stringify(afterRestart.json));
    assert.equal(afterRestart.json.status, "duplicate");
    assert.equal(await deployCount(), deploys, "the restarted node remembered the body");
  });

  it("GitHub: a body altered in one byte is not a replay, and fails its signature", async () => {
    const body = githubPush(sha);
    const altered = Buffer.from(body.toString().replace('"main"', '"mai\\u006e"'));
    const res = await fetch(`${node.url}/v1/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
      },
      body: altered,
    });
    assert.equal(res.status, 401);
    await res.body?.cancel();
  });

  it("Forgejo: the same body under a fresh X-Forgejo-Delivery deploys nothing, also after a restart", async () => {
    const body = Buffer.from(
      JSON.stringify(
        forgejoPushPayload({
          base: forgejo.url,
          fullName: `${OWNER}/${REPO}`,
          branch: "main",
          before: "0".repeat(40),
          after: sha,
          private: false,
        }),
      ),
    );
    const first = await deliverForgejo(body);
    assert.equal(first.status, 202, JSON.stringify(first.json));
    const deploys = await deployCount();
    const replay = await deliverForgejo(body);
    assert.equal(replay.status, 200, JSON.stringify(replay.json));
    assert.equal(replay.json.status, "duplicate");

    await node.close();
    node = await openNode();
    const afterRestart = await deliverForgejo(body);
    assert.equal(afterRestart.json.status, "duplicate", JSON.stringify(afterRestart.json));
    assert.equal(await deployCount(), deploys);
  });

  it("concurrent copies of one body start exactly one deploy", async () => {
    const other = await repo.commit({ "README.md": "concurrent\n" }, "C");
    const body = githubPush(other, sha);
    const deploys = await deployCount();
    const answers = await Promise.all(Array.from({ length: 8 }, () => deliverGithub(body)));
    assert.deepEqual(
      answers.map((a) => a.status).sort(),
      [200, 200, 200, 200, 200, 200, 200, 202],
      JSON.stringify(answers.map((a) => a.json)),
    );
    assert.equal(await deployCount(), deploys + 1);
  });
});
