import type { ImageSignatures } from "../pipeline/deps.js";
import { checkImageSignature, type SignatureCheck } from "../pipeline/signature-check.js";
import type { App } from "./apps-schema.js";
import type { NodeSignatures } from "./image-signatures.js";
import { releaseImage, type SignedRelease } from "./release-signatures.js";
import type { Release } from "./releases-store.js";

/**
 * A rollback's, promotion's or pushed release's `verify_signature`: the release's image (when it
 * has one) and its release manifest (always) must each carry a signature by a trusted key of the
 * tenant, under the policy of the environment the release goes to (promoting into prod requires
 * them even when test only warned). A release that was fine when built is checked again: a
 * trusted key may have been withdrawn, a signature deleted, or the stored row edited since.
 * Throws SIGNATURE_INVALID before any target is sent anything (the caller lets go of its lock).
 */
export async function rolloutSignatureCheck(
  signatures: NodeSignatures | undefined,
  app: App,
  release: Release,
  environment: string,
  log: (line: string) => Promise<void>,
): Promise<SignatureCheck> {
  if (!signatures) {
    return { log: "", message: "no signature verification on this node", data: { checked: false } };
  }
  // The repository the node's build pushed to names the tenant whose key signed it (an app's
  // tenant may differ from the deploy's that built it); releases are recorded by the node only.
  // A pushed release has no image: its manifest is signed in the app's own repository.
  const pushedTo = /^[^/]+\/([^/]+)\/([^/@]+)@sha256:[0-9a-f]{64}$/.exec(releaseImage(release) ?? "");
  const hasImage = releaseImage(release) !== undefined;
  let signedManifest: SignedRelease | undefined;
  const imageAndManifest: ImageSignatures = {
    policy: (env) => signatures.policy(env),
    sign: (tenant, appUuid, digest) => signatures.sign(tenant, appUuid, digest),
    async verify(tenant, appUuid, digest) {
      const image = hasImage ? await signatures.verify(tenant, appUuid, digest) : undefined;
      signedManifest = await signatures.verifyRelease(tenant, appUuid, release);
      const manifest = `release manifest ${signedManifest.artifact} by ${signedManifest.signature}`;
      return image === undefined ? manifest : `${image}; ${manifest}`;
    },
  };
  const checked = await checkImageSignature(
    imageAndManifest,
    {
      tenant: pushedTo?.[1] ?? app.tenant,
      appUuid: pushedTo?.[2] ?? app.uuid,
      digest: release.digest,
      environment,
    },
    { onRefused: log },
  );
  if (signedManifest) checked.data.release_manifest = signedManifest;
  await log(checked.log);
  return checked;
}
