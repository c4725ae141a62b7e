// Issue 14 §3, release-aware GC end to end: a node with 15 releases of one app in prod (signed,
// each with its commit tag and signature referrer, and its signed release manifest as a referrer,
// as the pipeline leaves them), a registry, and
// `tabbify registry gc --keep-releases-from <node> --keep-releases 10` run as a user runs it.
// The first run removes nothing (one strike); the second removes the 5 oldest releases with their
// tags, signatures and signed release manifests, keeps the last 10 whole (the 10th still pulls: a rollback to it works),
// and leaves a repository the node does not know alone.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { loadOrCreateBuildKey } from "../src/auth/build-keys.js";
import { AuditLog } from "../src/node/audit-log.js";
import { pushReleaseArtifact } from "../src/node/releases-oci.js";
import { ReleaseStore } from "../src/node/releases-store.js";
import { type RunningNode, startNode } from "../src/node/server.js";
import { RegistryClient } from "../src/registry/client.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { signatureTag, signImage } from "../src/registry/signatures.js";
import { call, ociManifestType, pushImage } from "./registry-helpers.js";

const entry = join(import.meta.dirname, "..", "src", "main", "tabbify.js");

/** Runs the CLI as a user does; stdout and stderr apart (the JSON report is on stdout). */
function runTabbify(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [entry, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const NODE_KEY = "node-key-release-gc-0123456789abcdef";
const APP = "0191e7c2-1111-7222-8333-444455556666";
const REPO = `acme/${APP}`;

let dir: string;
let node: RunningNode;
let registry: RunningRegistry;
const images: { digest: string; tag: string; layerDigest: string; releaseManifest: string }[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "gitreg-release-gc-"));
  registry = await startRegistry({ dataDir: join(dir, "registry") });
  node = await startNode({ port: 0, dataDir: join(dir, "node"), nodeKey: NODE_KEY, httpLogLevel: "silent" });
  const host = new URL(registry.url).host;
  const key = await loadOrCreateBuildKey(join(dir, "keys"), "acme");
  const releases = new ReleaseStore(node.store!, new AuditLog(node.store!));
  const sign = (digest: string, size: number) =>
    signImage(new RegistryClient({ url: registry.url }), {
      name: REPO,
      digest,
      dockerReference: `${host}/${REPO}`,
      key: key.privateKey,
      imageManifest: { mediaType: ociManifestType, size },
    });
  for (let i = 1; i <= 15; i++) {
    const tag = i.toString(16).padStart(40, "0");
    const image = await pushImage(registry.url, REPO, tag, { layer: Buffer.from(`release ${i}`) });
    await sign(image.digest, image.manifest.length);
    const source = { repo_url: "https://git.example/acme/web.git", commit_sha: tag };
    const { release } = await releases.record({
      app: APP,
      digest: image.digest,
      source,
      manifest: { app: APP, digest: image.digest, image: `${host}/${REPO}@${image.digest}`, source },
      created_by: `deploy:${i}`,
    });
    // The release manifest as a referrer of the image, signed in its turn (the registrar's work).
    const releaseManifest = await pushReleaseArtifact(
      { registryUrl: registry.url, repository: REPO, imageDigest: image.digest, token: "" },
      release,
    );
    const artifactSize = (
      await call(registry.url, `/v2/${REPO}/manifests/${releaseManifest}`, {
        headers: { accept: ociManifestType },
      })
    ).body.length;
    await sign(releaseManifest, artifactSize);
    images.push({ digest: image.digest, tag, layerDigest: image.layerDigest, releaseManifest });
    await releases.markRunning(release, "prod", "system", "release.deploy", { deploy_id: String(i) });
  }
  await pushImage(registry.url, "acme/elsewhere", "old", { layer: Buffer.from("not the node's") });
});
after(async () => {
  await node?.close();
  await registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const gc = () =>
  runTabbify(
    [
      "registry",
      "gc",
      "--data",
      join(dir, "registry"),
      "--keep-releases-from",
      node.url,
      "--keep-releases",
      "10",
      "--min-age",
      "0",
      "--json",
    ],
    { REGISTRY_GC_NODE_TOKEN: NODE_KEY },
  );

const status = async (path: string) => (await call(registry.url, path, { method: "HEAD" })).status;

it("the first run only marks; the second removes releases 1-5 with tags and signatures, keeps 6-15 whole", async () => {
  const first = await gc();
  assert.equal(first.code, 0, first.stderr);
  const report1 = JSON.parse(first.stdout) as { manifestsRemoved: unknown[]; releaseCandidates: string[] };
  assert.equal(report1.manifestsRemoved.length, 0);
  // 5 releases, their 5 signatures, 5 release manifests and their 5 signatures wait for a second strike.
  assert.equal(report1.releaseCandidates.length, 20);
  for (const image of images) assert.equal(await status(`/v2/${REPO}/manifests/${image.digest}`), 200);

  const second = await gc();
  assert.equal(second.code, 0, second.stderr);
  const report2 = JSON.parse(second.stdout) as {
    manifestsRemoved: { digest: string }[];
    tagsRemoved: { tag: string }[];
  };
  assert.equal(report2.manifestsRemoved.length, 20);
  // The commit tags and the `.sig` tags of the images and of their release manifests.
  assert.equal(report2.tagsRemoved.length, 15);
  for (const [i, image] of images.entries()) {
    const want = i < 5 ? 404 : 200;
    assert.equal(await status(`/v2/${REPO}/manifests/${image.digest}`), want, `release ${i + 1} manifest`);
    assert.equal(await status(`/v2/${REPO}/manifests/${image.tag}`), want, `release ${i + 1} tag`);
    assert.equal(
      await status(`/v2/${REPO}/manifests/${signatureTag(image.digest)}`),
      want,
      `release ${i + 1} signature`,
    );
    assert.equal(await status(`/v2/${REPO}/blobs/${image.layerDigest}`), want, `release ${i + 1} layer`);
    assert.equal(
      await status(`/v2/${REPO}/manifests/${image.releaseManifest}`),
      want,
      `release ${i + 1} release manifest`,
    );
    assert.equal(
      await status(`/v2/${REPO}/manifests/${signatureTag(image.releaseManifest)}`),
      want,
      `release ${i + 1} release manifest's signature`,
    );
  }
  // The 10th newest (release 6) is whole: a rollback to it pulls manifest and layer.
  const tenth = images[5]!;
  assert.equal(
    (await call(registry.url, `/v2/${REPO}/blobs/${tenth.layerDigest}`)).body.toString(),
    "release 6",
  );
  assert.equal(await status("/v2/acme/elsewhere/manifests/old"), 200);
});

it("a node that refuses the token stops the run before anything is collected", async () => {
  const refused = await runTabbify(
    ["registry", "gc", "--data", join(dir, "registry"), "--keep-releases-from", node.url, "--min-age", "0"],
    { REGISTRY_GC_NODE_TOKEN: "wrong" },
  );
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /HTTP 401.*nothing was collected/);
});
