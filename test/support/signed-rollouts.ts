// A real node (store, release routes, rollouts, its own signer) over the real auth service and
// registry (auth on), with one app of tenant `acme` and a roster of supervisors at a closed port:
// a rollout resolves its targets, gets past verify_signature when the signatures hold, and fails
// at fan_out (nothing listens). For the signature attacks of issue 14 (test/security/registry-*).
import assert from "node:assert/strict";
import type { KeyObject } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateBuildKey } from "../../src/auth/build-keys.js";
import { AuditLog } from "../../src/node/audit-log.js";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import { type Release, ReleaseStore } from "../../src/node/releases-store.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import type { RegistryAccess } from "../../src/pipeline/deps.js";
import { RegistryClient } from "../../src/registry/client.js";
import { signImage } from "../../src/registry/signatures.js";
import {
  ociManifestType,
  pushImage,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";
import { call } from "./apps-api.js";

export const NODE_KEY = "rollout-signatures-node-key-0123456789";
export const TENANT = "acme";

export interface RolloutRecord {
  status: string;
  events: Record<string, unknown>[];
}

export interface SignedRolloutNode {
  auth: TestAuth;
  reg: TestRegistry;
  access: RegistryAccess;
  node: RunningNode;
  nodeData: string;
  releases: ReleaseStore;
  appUuid: string;
  /** `acme/<app uuid>`. */
  repo: string;
  /** The registry's `host:port`. */
  host: string;
  close(): Promise<void>;
}

export async function startSignedRolloutNode(prefix: string): Promise<SignedRolloutNode> {
  const auth = await startTestAuth();
  const reg = await startTestRegistry({ authUrl: auth.url });
  const host = new URL(reg.url).host;
  const access = await tenantRegistryAccess({ registryHost: host, authDataDir: auth.dataDir });
  const nodeData = await mkdtemp(join(tmpdir(), prefix));
  const node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: NODE_KEY,
    dataDir: nodeData,
    deploy: { registry: access },
  });
  // Roster entries only, at a closed port: rollouts resolve a target, and any send to it fails.
  node.coordinator.register({
    kind: "supervisor",
    name: "closed-port",
    address: "http://127.0.0.1:9",
    ula: "127.0.0.1",
    version: "test",
    tags: ["supervisor", "docker", "process"],
  });
  const made = await call(node.url, "PUT", "/api/v1/apps/web", { token: NODE_KEY, body: { tenant: TENANT } });
  assert.ok(made.status === 200 || made.status === 201, made.text);
  const appUuid = String((made.body.after as { uuid: string }).uuid);
  return {
    auth,
    reg,
    access,
    node,
    nodeData,
    releases: new ReleaseStore(node.store!, new AuditLog(node.store!)),
    appUuid,
    repo: `${TENANT}/${appUuid}`,
    host,
    async close() {
      await node.close();
      await reg.close();
      await auth.close();
      await rm(nodeData, { recursive: true, force: true });
    },
  };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A tenant's build key in the node's data dir: what the node signs with for that tenant. */
export async function buildKeyOf(s: SignedRolloutNode, tenant = TENANT): Promise<KeyObject> {
  return (await loadOrCreateBuildKey(s.nodeData, tenant)).privateKey;
}

/** Pushes an image under a fresh tag with the app's push token; returns its digest. */
export async function pushedImage(s: SignedRolloutNode, label: string): Promise<string> {
  const token = await s.access.pushToken(TENANT, s.appUuid);
  return (
    await pushImage(s.reg.url, s.repo, label, {
      layer: Buffer.from(`${label} ${Math.random()}`),
      headers: bearer(token),
    })
  ).digest;
}

/** Reads a manifest of the app's repository by digest or tag: its bytes. */
export async function manifestBytes(s: SignedRolloutNode, reference: string): Promise<Buffer> {
  const token = await s.access.pushToken(TENANT, s.appUuid);
  const res = await fetch(`${s.reg.url}/v2/${s.repo}/manifests/${reference}`, {
    headers: { ...bearer(token), accept: ociManifestType },
  });
  assert.equal(res.status, 200, `${reference}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Puts a manifest into the app's repository under `reference`, as anyone with push rights can. */
export async function putManifest(s: SignedRolloutNode, reference: string, body: string): Promise<void> {
  const token = await s.access.pushToken(TENANT, s.appUuid);
  const put = await fetch(`${s.reg.url}/v2/${s.repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { ...bearer(token), "content-type": ociManifestType },
    body,
  });
  assert.equal(put.status, 201, await put.text());
}

/** Signs the manifest `digest` with `key`, in cosign's layout, as a referrer of it. */
export async function signWith(s: SignedRolloutNode, key: KeyObject, digest: string): Promise<void> {
  const token = await s.access.pushToken(TENANT, s.appUuid);
  const size = (await manifestBytes(s, digest)).length;
  await signImage(new RegistryClient({ url: s.reg.url, token }), {
    name: s.repo,
    digest,
    dockerReference: `${s.host}/${s.repo}`,
    key,
    imageManifest: { mediaType: ociManifestType, size },
  });
}

/** A release over `digest` as a build records it, already running in `environment`. */
export async function releaseRunningIn(
  s: SignedRolloutNode,
  digest: string,
  environment: string,
): Promise<Release> {
  const source = { repo_url: "https://git.example/acme/web.git", commit_sha: "a".repeat(40) };
  const { release } = await s.releases.record({
    app: s.appUuid,
    digest,
    source,
    manifest: { app: s.appUuid, digest, image: `${s.host}/${s.repo}@${digest}`, source },
    created_by: "test",
  });
  await s.releases.markRunning(release, environment, "test", "release.deploy");
  return release;
}

export async function lastRollout(s: SignedRolloutNode): Promise<RolloutRecord> {
  const row = await s.node
    .store!.db.selectFrom("deploys")
    .select("id")
    .where("app_uuid", "=", s.appUuid)
    .orderBy("created_at", "desc")
    .limit(1)
    .executeTakeFirstOrThrow();
  return (await s.node.pipeline!.store.get(row.id)) as unknown as RolloutRecord;
}

export const stepsOf = (events: Record<string, unknown>[]) =>
  events.filter((e) => e.type === "step_started").map((e) => e.step);

export const signatureStep = (events: Record<string, unknown>[]) =>
  events.find((e) => e.step === "verify_signature" && e.type === "step_finished")?.data as
    | Record<string, unknown>
    | undefined;

export function promote(s: SignedRolloutNode, release: Release, from: string, to: string) {
  return call(s.node.url, "POST", "/api/v1/apps/web/promote", {
    token: NODE_KEY,
    body: { from, to, release: release.id },
  });
}
