import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import type { DeployRecord } from "./executor.js";
import {
  branchIgnoreReason,
  currentDeployOf,
  DeliveryLedger,
  type DeliveryStore,
  deliveryHeaders,
  forgejoSignatureHeader,
  parsePushEvent,
  verifyForgejoSignature,
  verifyGithubSignature,
} from "./webhooks.js";

const code = (c: string) => (err: unknown) => isTabbifyError(err, c);

// GitHub's documented X-Hub-Signature-256 test vector ("Validating webhook deliveries").
const VECTOR_SECRET = "It's a Secret to Everybody";
const VECTOR_BODY = Buffer.from("Hello, World!");
const VECTOR_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

describe("verifyGithubSignature", () => {
  it("accepts GitHub's documented test vector", () => {
    verifyGithubSignature(VECTOR_SECRET, VECTOR_BODY, VECTOR_SIG);
  });

  it("rejects a body altered after signing", () => {
    assert.throws(
      () => verifyGithubSignature(VECTOR_SECRET, Buffer.from("Hello, World?"), VECTOR_SIG),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
  });

  it("rejects the right digest under another secret", () => {
    assert.throws(
      () => verifyGithubSignature("another secret", VECTOR_BODY, VECTOR_SIG),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
  });

  it("rejects a missing header", () => {
    assert.throws(
      () => verifyGithubSignature(VECTOR_SECRET, VECTOR_BODY, undefined),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
    assert.throws(
      () => verifyGithubSignature(VECTOR_SECRET, VECTOR_BODY, ""),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
  });

  it("rejects another algorithm prefix and malformed digests", () => {
    const hex = VECTOR_SIG.slice("sha256=".length);
    for (const header of [
      `sha1=${hex}`,
      hex,
      "sha256=",
      `sha256=${hex.slice(2)}`,
      `sha256=${hex}00`,
      `sha256=${"zz".repeat(32)}`,
    ]) {
      assert.throws(
        () => verifyGithubSignature(VECTOR_SECRET, VECTOR_BODY, header),
        code("WEBHOOK_SIGNATURE_INVALID"),
        header,
      );
    }
  });

  it("says the secret is unset before looking at the signature", () => {
    assert.throws(
      () => verifyGithubSignature(undefined, VECTOR_BODY, VECTOR_SIG),
      code("WEBHOOK_SECRET_UNSET"),
    );
    assert.throws(() => verifyGithubSignature("", VECTOR_BODY, undefined), code("WEBHOOK_SECRET_UNSET"));
  });

  it("never puts the secret or the digest in the message", () => {
    // assert.throws, not try/catch: an assertion thrown inside the try would be caught and pass.
    assert.throws(
      () => verifyGithubSignature(VECTOR_SECRET, Buffer.from("x"), VECTOR_SIG),
      (err: unknown) => {
        assert.ok(isTabbifyError(err, "WEBHOOK_SIGNATURE_INVALID"), String(err));
        const text = `${String(err)} ${JSON.stringify(err)}`;
        assert.ok(!text.includes(VECTOR_SECRET), text);
        assert.ok(!text.includes("757107ea"), text);
        return true;
      },
    );
  });
});

describe("verifyForgejoSignature", () => {
  const secret = "forgejo-secret";
  const body = Buffer.from('{"ref":"refs/heads/main"}');
  const sig = createHmac("sha256", secret).update(body).digest("hex");

  it("accepts a bare hex HMAC-SHA256", () => {
    verifyForgejoSignature(secret, body, sig);
    verifyForgejoSignature(secret, body, sig.toUpperCase());
  });

  it("rejects altered bodies, prefixes, missing headers and an unset secret", () => {
    assert.throws(
      () => verifyForgejoSignature(secret, Buffer.from("{}"), sig),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
    assert.throws(
      () => verifyForgejoSignature(secret, body, `sha256=${sig}`),
      code("WEBHOOK_SIGNATURE_INVALID"),
    );
    assert.throws(() => verifyForgejoSignature(secret, body, undefined), code("WEBHOOK_SIGNATURE_INVALID"));
    assert.throws(() => verifyForgejoSignature(undefined, body, sig), code("WEBHOOK_SECRET_UNSET"));
  });

  it("takes X-Forgejo-Signature over X-Gitea-Signature, and Gitea's when alone", () => {
    assert.equal(forgejoSignatureHeader({ "x-forgejo-signature": "a", "x-gitea-signature": "b" }), "a");
    assert.equal(forgejoSignatureHeader({ "x-gitea-signature": "b" }), "b");
    assert.equal(forgejoSignatureHeader({}), undefined);
  });

  it("reads event and delivery headers per source", () => {
    assert.deepEqual(deliveryHeaders("github", { "x-github-event": "push", "x-github-delivery": "d1" }), {
      eventName: "push",
      deliveryId: "d1",
    });
    assert.deepEqual(deliveryHeaders("forgejo", { "x-gitea-event": "push", "x-forgejo-delivery": "d2" }), {
      eventName: "push",
      deliveryId: "d2",
    });
  });
});

// GitHub's own sample payloads (octokit/webhooks, recorded from api.github.com).
const require = createRequire(import.meta.url);
const examplesPath = require.resolve("@octokit/webhooks-examples/api.github.com/index.json");
const examples = JSON.parse(readFileSync(examplesPath, "utf8")) as {
  name: string;
  examples: Record<string, unknown>[];
}[];
const pushExamples = examples.find((e) => e.name === "push")!.examples;
const pingExample = examples.find((e) => e.name === "ping")!.examples[0]!;

describe("parsePushEvent with GitHub's sample payloads", () => {
  it("reads a branch push with its installation", () => {
    const event = parsePushEvent("github", "push", "delivery-1", pushExamples[4]);
    assert.deepEqual(event, {
      kind: "push",
      source: "github",
      deliveryId: "delivery-1",
      repoUrl: "https://github.com/Codertocat/Hello-World.git",
      fullName: "Codertocat/Hello-World",
      ref: "refs/heads/master",
      branch: "master",
      sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      before: "0000000000000000000000000000000000000000",
      deleted: false,
      installationId: 1,
      defaultBranch: "master",
      pusher: "Codertocat",
      private: false,
    });
  });

  it("ignores tag pushes and tag deletions with a reason", () => {
    const tagPush = parsePushEvent("github", "push", "d", pushExamples[0]);
    assert.equal(tagPush.kind, "ignored");
    assert.match((tagPush as { reason: string }).reason, /tag push simple-tag/);
    const tagDelete = parsePushEvent("github", "push", "d", pushExamples[1]);
    assert.equal(tagDelete.kind, "ignored");
    assert.match((tagDelete as { reason: string }).reason, /tag simple-tag deleted/);
  });

  it("ignores a branch deletion (after = 0…0)", () => {
    const body = structuredClone(pushExamples[4]!) as Record<string, unknown>;
    body["after"] = "0".repeat(40);
    body["deleted"] = true;
    const event = parsePushEvent("github", "push", "d", body);
    assert.deepEqual(
      { kind: event.kind, reason: (event as { reason: string }).reason },
      { kind: "ignored", reason: "branch master deleted: nothing to deploy" },
    );
  });

  it("answers ping and ignores other events", () => {
    assert.deepEqual(parsePushEvent("github", "ping", "d", pingExample), {
      kind: "ping",
      source: "github",
      deliveryId: "d",
    });
    const other = parsePushEvent("github", "issues", "d", {});
    assert.equal(other.kind, "ignored");
    assert.match((other as { reason: string }).reason, /issues events are not deployed/);
  });

  it("rejects a push without the fields a deploy needs", () => {
    assert.throws(() => parsePushEvent("github", "push", "d", "[]"), code("WEBHOOK_PAYLOAD_INVALID"));
    const noAfter = structuredClone(pushExamples[4]!) as Record<string, unknown>;
    noAfter["after"] = "main";
    assert.throws(() => parsePushEvent("github", "push", "d", noAfter), code("WEBHOOK_PAYLOAD_INVALID"));
    assert.throws(
      () => parsePushEvent("github", "push", undefined, pushExamples[4]),
      code("WEBHOOK_PAYLOAD_INVALID"),
    );
  });

  it("deploys only the configured branch", () => {
    const event = parsePushEvent("github", "push", "d", pushExamples[4]);
    assert.equal(event.kind, "push");
    if (event.kind !== "push") return;
    assert.equal(branchIgnoreReason(event), undefined);
    assert.equal(branchIgnoreReason(event, "master"), undefined);
    assert.equal(
      branchIgnoreReason(event, "release"),
      "push to branch master ignored: the app deploys from release",
    );
  });
});

// A Forgejo push as Forgejo documents it (Settings → Webhooks → "Event information"):
// Gitea-compatible payload, pusher is a user object.
const forgejoPush = {
  ref: "refs/heads/develop",
  before: "28e1879d029cb852e4844d9c718537df08844e03",
  after: "bffeb74224043ba2feb48d137756c8a9331c449a",
  compare_url:
    "http://localhost:3000/forgejo/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
  commits: [
    {
      id: "bffeb74224043ba2feb48d137756c8a9331c449a",
      message: "Webhooks Yay!",
      url: "http://localhost:3000/forgejo/webhooks/commit/bffeb74224043ba2feb48d137756c8a9331c449a",
      author: { name: "Forgejo", email: "someone@forgejo.org", username: "forgejo" },
      committer: { name: "Forgejo", email: "someone@forgejo.org", username: "forgejo" },
      timestamp: "2017-03-13T13:52:11-04:00",
    },
  ],
  repository: {
    id: 140,
    owner: {
      id: 1,
      login: "forgejo",
      full_name: "Forgejo",
      email: "someone@forgejo.org",
      username: "forgejo",
    },
    name: "webhooks",
    full_name: "forgejo/webhooks",
    description: "",
    private: false,
    fork: false,
    html_url: "http://localhost:3000/forgejo/webhooks",
    ssh_url: "ssh://forgejo@localhost:2222/forgejo/webhooks.git",
    clone_url: "http://localhost:3000/forgejo/webhooks.git",
    website: "",
    default_branch: "main",
    created_at: "2017-02-26T04:29:06-05:00",
    updated_at: "2017-03-13T13:51:58-04:00",
  },
  pusher: {
    id: 1,
    login: "forgejo",
    full_name: "Forgejo",
    email: "someone@forgejo.org",
    username: "forgejo",
  },
  sender: {
    id: 1,
    login: "forgejo",
    full_name: "Forgejo",
    email: "someone@forgejo.org",
    username: "forgejo",
  },
};

describe("parsePushEvent with a Forgejo payload", () => {
  it("reads clone_url, ref, after, before and the pusher's login", () => {
    const event = parsePushEvent("forgejo", "push", "f6266f16-1bf3-46a5-9ea4-602e06ead473", forgejoPush);
    assert.deepEqual(event, {
      kind: "push",
      source: "forgejo",
      deliveryId: "f6266f16-1bf3-46a5-9ea4-602e06ead473",
      repoUrl: "http://localhost:3000/forgejo/webhooks.git",
      fullName: "forgejo/webhooks",
      ref: "refs/heads/develop",
      branch: "develop",
      sha: "bffeb74224043ba2feb48d137756c8a9331c449a",
      before: "28e1879d029cb852e4844d9c718537df08844e03",
      deleted: false,
      defaultBranch: "main",
      pusher: "forgejo",
      private: false,
    });
    if (event.kind === "push") assert.match(branchIgnoreReason(event) ?? "", /deploys from main/);
  });

  it("ignores a Forgejo branch deletion", () => {
    const event = parsePushEvent("forgejo", "push", "d", { ...forgejoPush, after: "0".repeat(40) });
    assert.equal(event.kind, "ignored");
  });
});

describe("DeliveryLedger", () => {
  class RecordingStore implements DeliveryStore {
    ids: string[];
    fail = false;
    constructor(ids: string[] = []) {
      this.ids = [...ids];
    }
    async load() {
      return [...this.ids];
    }
    async record(id: string, evicted: readonly string[]) {
      if (this.fail) throw new Error("disk full");
      this.ids = this.ids.filter((x) => !evicted.includes(x));
      this.ids.push(id);
    }
  }

  it("claims an id once, also when the redelivery races the first", async () => {
    const ledger = await DeliveryLedger.open();
    const [a, b] = await Promise.all([ledger.claim("x"), ledger.claim("x")]);
    assert.deepEqual([a, b].sort(), [false, true]);
    assert.equal(await ledger.claim("x"), false);
    assert.equal(await ledger.claim("y"), true);
  });

  it("keeps only the newest ids and tells the store which fell out", async () => {
    const store = new RecordingStore();
    const ledger = await DeliveryLedger.open({ capacity: 3, store });
    for (const id of ["a", "b", "c", "d"]) assert.equal(await ledger.claim(id), true);
    assert.deepEqual(store.ids, ["b", "c", "d"]);
    assert.equal(ledger.size, 3);
    assert.equal(await ledger.claim("a"), true, "an evicted id is new again");
  });

  it("remembers across a restart through the store", async () => {
    const store = new RecordingStore(["old-1", "old-2"]);
    const ledger = await DeliveryLedger.open({ store });
    assert.equal(await ledger.claim("old-2"), false);
    assert.equal(await ledger.claim("new"), true);
    const reopened = await DeliveryLedger.open({ store });
    assert.equal(await reopened.claim("new"), false);
  });

  it("forgets an id it could not persist, so the retry is processed", async () => {
    const store = new RecordingStore();
    const ledger = await DeliveryLedger.open({ store });
    store.fail = true;
    await assert.rejects(ledger.claim("z"), /disk full/);
    store.fail = false;
    assert.equal(await ledger.claim("z"), true);
  });
});

describe("currentDeployOf", () => {
  const A = "a".repeat(40);
  const B = "b".repeat(40);
  let n = 0;
  const record = (
    sha: string,
    status: DeployRecord["status"],
    repoUrl = "https://github.com/acme/app.git",
    results: DeployRecord["results"] = [],
  ): DeployRecord => ({
    id: `d${++n}`,
    status,
    request: { trigger: "github", repoUrl, ref: sha, sha, tenant: "acme" },
    created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    results,
    events: [],
  });

  it("finds the newest live deploy of the repository, in any URL spelling, when it is of the commit", () => {
    const a = record(A, "succeeded");
    const b = record(B, "succeeded", "https://GitHub.com/acme/app");
    assert.equal(currentDeployOf([b, a], "https://github.com/acme/app.git", B)?.id, b.id);
    assert.equal(
      currentDeployOf([a, b], "https://github.com/acme/app.git", A),
      undefined,
      "A is no longer current",
    );
    assert.equal(currentDeployOf([a, b], "https://github.com/acme/other.git", B), undefined);
  });

  it("ignores failed deploys and ones where a target failed; a running one counts", () => {
    const ok = record(A, "succeeded");
    const failed = record(B, "failed");
    assert.equal(currentDeployOf([ok, failed], "https://github.com/acme/app.git", A)?.id, ok.id);
    assert.equal(currentDeployOf([ok, failed], "https://github.com/acme/app.git", B), undefined);
    const partial = record(B, "succeeded", undefined, [
      { supervisor: "s", runtime: "docker", success: false, app_ula: "fd5a:1f02::1", error: "pull failed" },
    ]);
    assert.equal(currentDeployOf([ok, partial], "https://github.com/acme/app.git", B), undefined);
    const running = record(B, "running");
    assert.equal(currentDeployOf([ok, running], "https://github.com/acme/app.git", B)?.id, running.id);
  });

  it("reads the commit from the built image when the request named a branch", () => {
    const byBranch: DeployRecord = {
      ...record(A, "succeeded"),
      request: { trigger: "api", repoUrl: "https://github.com/acme/app", ref: "main", tenant: "acme" },
      image_ref: `127.0.0.1:5000/acme/0191e7c2-1111-7222-8333-444455556666:${A}`,
    };
    assert.equal(currentDeployOf([byBranch], "https://github.com/acme/app.git", A)?.id, byBranch.id);
  });
});
