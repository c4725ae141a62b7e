// Issue 14 §3, attacks on the signature check of rollbacks and promotions: a real node (its
// store, release routes and rollout), the real auth service and registry (auth on) and the node's
// own signer. Releases are recorded as a build would record them, over images that someone with
// push rights left in the app's repository: unsigned, signed by another tenant's key, or carrying
// a signature replayed from another image. Promoting any of them into prod (`require`) is refused
// with SIGNATURE_INVALID before a target is sent anything, and prod's release
// does not change; into test (`warn`) the rollout goes on past the check and records why.
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadOrCreateBuildKey } from "../../src/auth/build-keys.js";
import { AuditLog } from "../../src/node/audit-log.js";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import { type Release, ReleaseStore } from "../../src/node/releases-store.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import type { RegistryAccess } from "../../src/pipeline/deps.js";
import { signImage } from "../../src/registry/signatures.js";
import {
  ociManifestType,
  pushImage,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";
import { call } from "../support/apps-api.js";

const NODE_KEY = "rollout-signatures-node-key-0123456789";
const TENANT = "acme";

let auth: TestAuth;
let reg: TestRegistry;
let access: RegistryAccess;
let nodeData: string;
let node: RunningNode;
let releases: ReleaseStore;
let appUuid: string;
let repo: string;
let host: string;

before(async () => {
  auth = await startTestAuth();
  reg = await startTestRegistry({ authUrl: auth.url });
  host = new URL(reg.url).host;
  access = await tenantRegistryAccess({ registryHost: host, authDataDir: auth.dataDir });
  nodeData = await mkdtemp(join(tmpdir(), "reg-rollout-sig-"));
  node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: NODE_KEY,
    dataDir: nodeData,
    deploy: { registry: access },
  });
  // A roster entry only, at a closed port: rollouts resolve a target, and any send to it fails.
  node.coordinator.register({
    kind: "supervisor",
    name: "closed-port",
    address: "http://127.0.0.1:9",
    ula: "127.0.0.1",
    version: "test",
    tags: ["supervisor", "docker"],
  });
  const made = await call(node.url, "PUT", "/api/v1/apps/web", { token: NODE_KEY, body: { tenant: TENANT } });
  assert.ok(made.status === 200 || made.status === 201, made.text);
  appUuid = String((made.body.after as { uuid: string }).uuid);
  repo = `${TENANT}/${appUuid}`;
  releases = new ReleaseStore(node.store!, new AuditLog(node.store!));
});
after(async () => {
  await node?.close();
  await reg?.close();
  await auth?.close();
  if (nodeData) await rm(nodeData, { recursive: true, force: true });
});

/** The tenant's build key in the node's data dir: what the node's builder signs with. */
const nodeBuildKey = async () => (await loadOrCreateBuildKey(nodeData, TENANT)).privateKey;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Pushes an image under a fresh tag with the app's push token; returns its digest. */
async function pushed(label: string): Promise<string> {
  const token = await access.pushToken(TENANT, appUuid);
  return (
    await pushImage(reg.url, repo, label, {
      layer: Buffer.from(`${label} ${Math.random()}`),
      headers: bearer(token),
    })
  ).digest;
}

/** Signs `digest` with `key`, naming `named` in the signed payload (a replay when they differ). */
async function signWith(key: KeyObject, digest: string, named = digest): Promise<void> {
  const token = await access.pushToken(TENANT, appUuid);
  const manifest = await fetch(`${reg.url}/v2/${repo}/manifests/${digest}`, {
    headers: { ...bearer(token), accept: ociManifestType },
  });
  const size = (await manifest.arrayBuffer()).byteLength;
  // signImage signs the payload for `named` and hangs it under `named`'s subject; a replay
  // re-hangs that same signature manifest's payload under `digest`.
  await signImage(
    { base: reg.url, headers: bearer(token) },
    {
      name: repo,
      digest: named,
      dockerReference: `${host}/${repo}`,
      key,
      imageManifest: { mediaType: ociManifestType, size },
    },
  );
  if (named === digest) return;
  const sigTag = `sha256-${named.slice("sha256:".length)}.sig`;
  const sig = (await (
    await fetch(`${reg.url}/v2/${repo}/manifests/${sigTag}`, {
      headers: { ...bearer(token), accept: ociManifestType },
    })
  ).json()) as { subject: { digest: string; size: number } };
  sig.subject = { ...sig.subject, digest, size };
  const put = await fetch(`${reg.url}/v2/${repo}/manifests/sha256-${digest.slice(7)}.sig`, {
    method: "PUT",
    headers: { ...bearer(token), "content-type": ociManifestType },
    body: JSON.stringify(sig),
  });
  assert.equal(put.status, 201, await put.text());
}

/** A release over `digest` as a build records it, already running in `environment`. */
async function releaseRunningIn(digest: string, environment: string): Promise<Release> {
  const { release } = await releases.record({
    app: appUuid,
    digest,
    source: { repo_url: "https://git.example/acme/web.git", commit_sha: "a".repeat(40) },
    manifest: { app: appUuid, digest, image: `${host}/${repo}@${digest}` },
    created_by: "test",
  });
  await releases.markRunning(release, environment, "test", "release.deploy");
  return release;
}

async function lastRollout(): Promise<{ status: string; events: Record<string, unknown>[] }> {
  const row = await node
    .store!.db.selectFrom("deploys")
    .select("id")
    .where("app_uuid", "=", appUuid)
    .orderBy("created_at", "desc")
    .limit(1)
    .executeTakeFirstOrThrow();
  const record = await node.pipeline!.store.get(row.id);
  return record as unknown as { status: string; events: Record<string, unknown>[] };
}

const stepsOf = (events: Record<string, unknown>[]) =>
  events.filter((e) => e.type === "step_started").map((e) => e.step);
const signatureStep = (events: Record<string, unknown>[]) =>
  events.find((e) => e.step === "verify_signature" && e.type === "step_finished")?.data as
    | Record<string, unknown>
    | undefined;

async function promote(release: Release, from: string, to: string) {
  return call(node.url, "POST", "/api/v1/apps/web/promote", {
    token: NODE_KEY,
    body: { from, to, release: release.id },
  });
}

describe("signatures on rollback and promotion", () => {
  it("refuses to promote an unsigned, foreign-signed or replay-signed image into prod, changing nothing", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const signedOk = await pushed("genuine");
    await signWith(await nodeBuildKey(), signedOk);
    const current = await releaseRunningIn(signedOk, "prod");

    const unsigned = await pushed("by-hand");
    const foreign = await pushed("foreign");
    await signWith(other, foreign);
    const replayed = await pushed("replayed");
    await signWith(await nodeBuildKey(), replayed, signedOk);

    for (const [label, digest, why] of [
      ["unsigned", unsigned, /has no signature by a trusted key/],
      ["signed by another key", foreign, /not by a trusted key/],
      ["signature replayed from another image", replayed, /does not name/],
    ] as const) {
      const release = await releaseRunningIn(digest, "test");
      const refused = await promote(release, "test", "prod");
      assert.equal(refused.status, 409, `${label}: ${refused.text}`);
      assert.equal(refused.body.code, "SIGNATURE_INVALID", label);
      assert.match(String(refused.body.error), why, label);
      const record = await lastRollout();
      assert.equal(record.status, "failed", label);
      assert.deepEqual(stepsOf(record.events), ["acquire_lock", "verify_signature"], `${label}: no fan-out`);
      assert.equal(
        (await releases.history(appUuid, "prod")).current?.id,
        current.id,
        `${label}: prod unchanged`,
      );
      assert.equal(await releases.ranIn(release, "prod"), false, label);
    }
  });

  it("lets a trusted signature through to the rollout, and only warns outside prod", async () => {
    const key = await nodeBuildKey();
    const signed = await pushed("signed-by-node");
    await signWith(key, signed);
    const release = await releaseRunningIn(signed, "test");
    // The only target is a closed port: the rollout gets past verify_signature and fails there.
    const promoted = await promote(release, "test", "prod");
    assert.equal(promoted.body.code, "ROLLOUT_FAILED", promoted.text);
    const record = await lastRollout();
    assert.deepEqual(stepsOf(record.events), [
      "acquire_lock",
      "verify_signature",
      "migrate",
      "fan_out",
      "verify",
    ]);
    assert.equal(signatureStep(record.events)?.verified, true);
    assert.equal(signatureStep(record.events)?.policy, "require");

    const unsigned = await pushed("unsigned-for-test");
    const inStaging = await releaseRunningIn(unsigned, "staging");
    const warned = await promote(inStaging, "staging", "test");
    assert.equal(warned.body.code, "ROLLOUT_FAILED", warned.text);
    const warnedRecord = await lastRollout();
    assert.equal(signatureStep(warnedRecord.events)?.verified, false);
    assert.equal(signatureStep(warnedRecord.events)?.policy, "warn");
    assert.ok(stepsOf(warnedRecord.events).includes("fan_out"), "warn goes on to the targets");
  });

  it("refuses a rollback of prod to an unsigned image, and prod keeps its release", async () => {
    const unsigned = await pushed("rollback-target");
    const old = await releaseRunningIn(unsigned, "prod");
    const key = await nodeBuildKey();
    const now = await pushed("rollback-current");
    await signWith(key, now);
    await releaseRunningIn(now, "prod");
    const refused = await call(node.url, "POST", "/api/v1/apps/web/rollback", {
      token: NODE_KEY,
      body: { env: "prod", to: old.id },
    });
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.code, "SIGNATURE_INVALID");
    assert.equal((await releases.history(appUuid, "prod")).current?.digest, now);
  });
});
