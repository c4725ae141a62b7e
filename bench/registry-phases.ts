/**
 * `npm run bench:registry-phases`: what the registry's phase-3 work costs, each printed as a
 * ratio against an anchor measured in the same run (a plain push of the same small image to a
 * registry without notifications), so a busy machine moves both alike. Asserts nothing.
 *
 * - push with `--notify` (the fsynced on-disk queue) vs the anchor push;
 * - signing a pushed image, and verifying its signature as `verify_signature` does (ms);
 * - `registry gc` over --blobs blobs (default 10,000), half of them unreferenced, with and without
 *   release roots.
 *
 * Flags: --rounds 20 --blobs 10000
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
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

const dir = await mkdtemp(join(tmpdir(), "bench-registry-phases-"));
try {
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
  const withNotify: number[] = [];
  const signMs: number[] = [];
  const verifyMs: number[] = [];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  for (let i = 0; i < rounds; i++) {
    const layer = Buffer.from(`bench layer ${i} ${Math.random()}`);
    anchor.push(await timed(() => pushImage(plain.url, "acme/web", `a${i}`, { layer })));
    withNotify.push(await timed(() => pushImage(notifying.url, "acme/web", `n${i}`, { layer })));
    const image = await pushImage(plain.url, "acme/signed", `s${i}`, { layer });
    const reg = { base: plain.url, headers: {} };
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
  }
  await notifying.close();
  await new Promise((r) => sink.close(r));

  // GC over blobCount blobs: manifests of 100 layers each; every other manifest's tag deleted.
  const gcRegistry = await startRegistry({ dataDir: join(dir, "gc") });
  const perManifest = 100;
  const config = await pushBlob(gcRegistry.url, "acme/gc", Buffer.from("{}"));
  for (let m = 0; m < blobCount / perManifest; m++) {
    const layers: { digest: string; size: number }[] = [];
    for (let l = 0; l < perManifest; l++) {
      const data = Buffer.from(`blob ${m}/${l}`);
      layers.push({ digest: await pushBlob(gcRegistry.url, "acme/gc", data), size: data.length });
    }
    const manifest = imageManifest({ digest: config, size: 2 }, layers);
    await call(gcRegistry.url, `/v2/acme/gc/manifests/m${m}`, {
      method: "PUT",
      body: manifest,
      headers: { "content-type": ociManifestType },
    });
    if (m % 2 === 1) {
      await call(gcRegistry.url, `/v2/acme/gc/manifests/m${m}`, { method: "DELETE" });
      await call(gcRegistry.url, `/v2/acme/gc/manifests/${sha256(manifest)}`, { method: "DELETE" });
    }
  }
  const dryGc = await timed(() => collectGarbage(gcRegistry.service, { dryRun: true, minAgeMs: 0 }));
  let removed = 0;
  const gcMs = await timed(async () => {
    removed = (await collectGarbage(gcRegistry.service, { minAgeMs: 0 })).blobsRemoved.length;
  });
  await gcRegistry.close();
  await plain.close();

  const a = median(anchor);
  const row = (name: string, ms: number) =>
    console.log(
      `${name.padEnd(46)} ${ms.toFixed(2).padStart(10)} ms  ${(ms / a).toFixed(2).padStart(8)} × anchor`,
    );
  console.log(`registry phases bench: ${rounds} rounds (medians), ${blobCount} blobs for GC`);
  row("anchor: plain push (config + layer + manifest)", a);
  row("push with --notify (fsynced queue)", median(withNotify));
  row("sign a pushed image (cosign layout)", median(signMs));
  row("verify_signature (referrers + payload + ECDSA)", median(verifyMs));
  row(`gc --dry-run over ${blobCount} blobs`, dryGc);
  row(`gc over ${blobCount} blobs (${removed} removed)`, gcMs);
} finally {
  await rm(dir, { recursive: true, force: true });
}
