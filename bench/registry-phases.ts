/**
 * `npm run bench:registry-phases`: what the registry's phase-3 work costs, measured in one run
 * against Debian's `docker-registry` (the CNCF reference registry) as the anchor, so a busy
 * machine moves both alike. Pushes take turns round by round. Asserts nothing.
 *
 * - anchor: a plain push of a small image (config + layer + manifest) to docker-registry;
 * - the same push to ours, and to ours with `--notify` (the fsynced on-disk queue);
 * - signing a pushed image, and verifying its signature as `verify_signature` does;
 * - pushing and signing a release manifest (a referrer of the image), and verifying it as a
 *   rollout's `verify_signature` does on top of the image's (release-signatures.ts);
 * - GC over --blobs blobs (default 10,000), half of them unreferenced, pushed alike to both:
 *   docker-registry's offline `garbage-collect --delete-untagged` against ours (online, with the
 *   same rules: `--delete-untagged --min-age 0`), and our dry run.
 *
 * Flags: --rounds 20 --blobs 10000
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freeLoopbackPort } from "../src/core/net.js";
import { verifyReleaseManifest } from "../src/node/release-signatures.js";
import { pushReleaseArtifact } from "../src/node/releases-oci.js";
import type { Release } from "../src/node/releases-store.js";
import { RegistryClient } from "../src/registry/client.js";
import { collectGarbage } from "../src/registry/gc.js";
import { startRegistry } from "../src/registry/index.js";
import { signImage, verifyImageSignature } from "../src/registry/signatures.js";
import {
  call,
  imageManifest,
  ociManifestType,
  pushBlob,
  pushImage,
  sha256,
} from "../test/registry-helpers.js";
import { spawnProcess, waitForHttp, writeDockerRegistryConfig } from "../test/support/tools.js";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "20" }, blobs: { type: "string", default: "10000" } },
});
const rounds = Number(values.rounds);
const blobCount = Number(values.blobs);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Debian's docker-registry on a free port, its storage under `root`; null when not installed. */
async function startDockerRegistry(dir: string, root: string) {
  if (!existsSync("/usr/bin/docker-registry")) return null;
  const port = await freeLoopbackPort();
  const config = await writeDockerRegistryConfig(dir, root, port);
  const proc = spawnProcess("/usr/bin/docker-registry", ["serve", config]);
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/v2/`, 15_000);
  return { base, config, proc };
}

/** --blobs blobs in manifests of 100 layers; every other manifest deleted (its blobs unreferenced). */
async function fillForGc(base: string, repo: string): Promise<void> {
  const perManifest = 100;
  const config = await pushBlob(base, repo, Buffer.from("{}"));
  for (let m = 0; m < blobCount / perManifest; m++) {
    const layers: { digest: string; size: number }[] = [];
    for (let l = 0; l < perManifest; l++) {
      const data = Buffer.from(`blob ${m}/${l}`);
      layers.push({ digest: await pushBlob(base, repo, data), size: data.length });
    }
    const manifest = imageManifest({ digest: config, size: 2 }, layers);
    await call(base, `/v2/${repo}/manifests/m${m}`, {
      method: "PUT",
      body: manifest,
      headers: { "content-type": ociManifestType },
    });
    if (m % 2 === 1) {
      // docker-registry deletes a manifest's tags with it and refuses a DELETE by tag; ours
      // takes the tag first.
      await call(base, `/v2/${repo}/manifests/m${m}`, { method: "DELETE" });
      await call(base, `/v2/${repo}/manifests/${sha256(manifest)}`, { method: "DELETE" });
    }
  }
}

const dir = await mkdtemp(join(tmpdir(), "bench-registry-phases-"));
let dockerProc: { stop(): Promise<void> } | undefined;
try {
  const docker = await startDockerRegistry(dir, join(dir, "docker-registry"));
  dockerProc = docker?.proc;
  if (!docker) throw new Error("docker-registry is the anchor: apt-get install -y docker-registry");
  const plain = await startRegistry({ dataDir: join(dir, "plain") });
  // A notify endpoint that answers 202 at once: the cost measured is the queue's, not a node's.
  const sink = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(202).end());
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  const notifying = await startRegistry({
    dataDir: join(dir, "notify"),
    notify: [{ url: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/events` }],
  });
  const anchor: number[] = [];
  const ours: number[] = [];
  const withNotify: number[] = [];
  const signMs: number[] = [];
  const verifyMs: number[] = [];
  const signReleaseMs: number[] = [];
  const verifyReleaseMs: number[] = [];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  for (let i = 0; i < rounds; i++) {
    const layer = Buffer.from(`bench layer ${i} ${Math.random()}`);
    anchor.push(await timed(() => pushImage(docker.base, "acme/web", `a${i}`, { layer })));
    ours.push(await timed(() => pushImage(plain.url, "acme/web", `a${i}`, { layer })));
    withNotify.push(await timed(() => pushImage(notifying.url, "acme/web", `n${i}`, { layer })));
    const image = await pushImage(plain.url, "acme/signed", `s${i}`, { layer });
    const reg = new RegistryClient({ url: plain.url });
    signMs.push(
      await timed(() =>
        signImage(reg, {
          name: "acme/signed",
          digest: image.digest,
          dockerReference: "bench/acme/signed",
          key: privateKey,
          imageManifest: { mediaType: ociManifestType, size: image.manifest.length },
        }),
      ),
    );
    verifyMs.push(
      await timed(() =>
        verifyImageSignature(reg, { name: "acme/signed", digest: image.digest, trustedKeys: [publicKey] }),
      ),
    );
    const source = { repo_url: "https://git.example/acme/signed.git", commit_sha: "b".repeat(40) };
    const release: Release = {
      id: `0191e7c2-0000-7000-8000-${String(i).padStart(12, "0")}`,
      app: "signed",
      digest: image.digest,
      source,
      manifest: {
        app: "signed",
        digest: image.digest,
        image: `bench/acme/signed@${image.digest}`,
        source,
        release: `0191e7c2-0000-7000-8000-${String(i).padStart(12, "0")}`,
      },
      created_at: new Date().toISOString(),
      created_by: "bench",
    };
    signReleaseMs.push(
      await timed(async () => {
        const artifact = await pushReleaseArtifact(
          { registryUrl: plain.url, repository: "acme/signed", imageDigest: image.digest, token: "" },
          release,
        );
        const size = (
          await call(plain.url, `/v2/acme/signed/manifests/${artifact}`, {
            headers: { accept: ociManifestType },
          })
        ).body.length;
        await signImage(reg, {
          name: "acme/signed",
          digest: artifact,
          dockerReference: "bench/acme/signed",
          key: privateKey,
          imageManifest: { mediaType: ociManifestType, size },
        });
      }),
    );
    verifyReleaseMs.push(
      await timed(() =>
        verifyReleaseManifest(reg, { name: "acme/signed", release, trustedKeys: [publicKey] }),
      ),
    );
  }
  await notifying.close();
  await new Promise((r) => sink.close(r));

  // GC over blobCount blobs, the same content in both registries.
  await fillForGc(docker.base, "acme/gc");
  await docker.proc.stop();
  const dockerGc = spawnProcess("/usr/bin/docker-registry", [
    "garbage-collect",
    "--delete-untagged",
    docker.config,
  ]);
  const dockerGcMs = await timed(() => dockerGc.exited);
  const dockerGcExit = await dockerGc.exited;
  const gcRegistry = await startRegistry({ dataDir: join(dir, "gc") });
  await fillForGc(gcRegistry.url, "acme/gc");
  const dryGc = await timed(() =>
    collectGarbage(gcRegistry.service, { dryRun: true, minAgeMs: 0, deleteUntagged: true }),
  );
  let removed = 0;
  const gcMs = await timed(async () => {
    removed = (await collectGarbage(gcRegistry.service, { minAgeMs: 0, deleteUntagged: true })).blobsRemoved
      .length;
  });
  await gcRegistry.close();
  await plain.close();

  const a = median(anchor);
  const row = (name: string, ms: number) =>
    console.log(
      `${name.padEnd(46)} ${ms.toFixed(2).padStart(10)} ms  ${(ms / a).toFixed(2).padStart(8)} × anchor`,
    );
  const gcRow = (name: string, ms: number) =>
    console.log(
      `${name.padEnd(46)} ${ms.toFixed(2).padStart(10)} ms  ${(ms / dockerGcMs).toFixed(2).padStart(8)} × docker-registry gc`,
    );
  console.log(`registry phases bench: ${rounds} rounds (medians), ${blobCount} blobs for GC`);
  row("anchor: docker-registry plain push", a);
  row("ours: plain push (config + layer + manifest)", median(ours));
  row("ours: push with --notify (fsynced queue)", median(withNotify));
  row("sign a pushed image (cosign layout)", median(signMs));
  row("verify_signature (referrers + payload + ECDSA)", median(verifyMs));
  row("push + sign a release manifest", median(signReleaseMs));
  row("verify a release manifest (rollouts, on top)", median(verifyReleaseMs));
  gcRow(`docker-registry garbage-collect (exit ${dockerGcExit})`, dockerGcMs);
  gcRow(`ours: gc --dry-run over ${blobCount} blobs`, dryGc);
  gcRow(`ours: gc over ${blobCount} blobs (${removed} removed)`, gcMs);
} finally {
  await dockerProc?.stop();
  await rm(dir, { recursive: true, force: true });
}
