// Issue 14 §3, attacks on the signature check of rollbacks and promotions: a real node (its
// store, release routes and rollout), the real auth service and registry (auth on) and the node's
// own signer. Releases are recorded as a build would record them, over images that someone with
// push rights left in the app's repository: unsigned, signed by another tenant's key, or carrying
// a signature replayed from another image. Promoting any of them into prod (`require`) is refused
// with SIGNATURE_INVALID before a target is sent anything, and prod's release
// does not change; into test (`warn`) the rollout goes on past the check and records why.
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Release } from "../../src/node/releases-store.js";
import { call } from "../support/apps-api.js";
import {
  buildKeyOf,
  lastRollout,
  manifestBytes,
  NODE_KEY,
  promote as promoteOn,
  pushedImage,
  putManifest,
  releaseRunningIn as runningIn,
  type SignedRolloutNode,
  signatureStep,
  signWith as signOn,
  startSignedRolloutNode,
  stepsOf,
} from "../support/signed-rollouts.js";

let s: SignedRolloutNode;

before(async () => {
  s = await startSignedRolloutNode("reg-rollout-sig-");
});
after(async () => {
  await s?.close();
});

const nodeBuildKey = () => buildKeyOf(s);
const pushed = (label: string) => pushedImage(s, label);
const promote = (release: Release, from: string, to: string) => promoteOn(s, release, from, to);

/**
 * A release over `digest` running in `environment`, its release manifest signed by the node as a
 * build's is: these attacks are on the image's signature alone.
 */
async function releaseRunningIn(digest: string, environment: string): Promise<Release> {
  const release = await runningIn(s, digest, environment);
  await s.node.pipeline!.signatures!.signRelease("acme", s.appUuid, release);
  return release;
}

/** Signs `digest` with `key`, naming `named` in the signed payload (a replay when they differ). */
async function signWith(key: KeyObject, digest: string, named = digest): Promise<void> {
  await signOn(s, key, named);
  if (named === digest) return;
  // A replay re-hangs that same signature manifest's payload under `digest`.
  const sig = JSON.parse(
    (await manifestBytes(s, `sha256-${named.slice("sha256:".length)}.sig`)).toString("utf8"),
  ) as { subject: { digest: string; size: number } };
  sig.subject = { ...sig.subject, digest, size: (await manifestBytes(s, digest)).length };
  await putManifest(s, `sha256-${digest.slice(7)}.sig`, JSON.stringify(sig));
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
      const record = await lastRollout(s);
      assert.equal(record.status, "failed", label);
      assert.deepEqual(stepsOf(record.events), ["acquire_lock", "verify_signature"], `${label}: no fan-out`);
      assert.equal(
        (await s.releases.history(s.appUuid, "prod")).current?.id,
        current.id,
        `${label}: prod unchanged`,
      );
      assert.equal(await s.releases.ranIn(release, "prod"), false, label);
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
    const record = await lastRollout(s);
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
    const warnedRecord = await lastRollout(s);
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
    const refused = await call(s.node.url, "POST", "/api/v1/apps/web/rollback", {
      token: NODE_KEY,
      body: { env: "prod", to: old.id },
    });
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.code, "SIGNATURE_INVALID");
    assert.equal((await s.releases.history(s.appUuid, "prod")).current?.digest, now);
  });
});
