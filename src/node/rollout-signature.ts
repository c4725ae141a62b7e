import type { ImageSignatures } from "../pipeline/deps.js";
import { checkImageSignature, type SignatureCheck } from "../pipeline/signature-check.js";
import type { App } from "./apps-schema.js";
import type { Release } from "./releases-store.js";

/**
 * A rollback's or promotion's `verify_signature`: the release's digest is checked as a build's
 * is, under the policy of the environment it goes to (promoting into prod requires a trusted
 * signature even when test only warned). A release that was fine when built is checked again:
 * a trusted key may have been withdrawn, or the signature deleted, since. Throws
 * SIGNATURE_INVALID before any target is sent anything (the caller lets go of its lock).
 */
export async function rolloutSignatureCheck(
  signatures: ImageSignatures | undefined,
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
  const pushedTo = /^[^/]+\/([^/]+)\/([^/@]+)@sha256:[0-9a-f]{64}$/.exec(
    String(release.manifest.image ?? ""),
  );
  const checked = await checkImageSignature(
    signatures,
    {
      tenant: pushedTo?.[1] ?? app.tenant,
      appUuid: pushedTo?.[2] ?? app.uuid,
      digest: release.digest,
      environment,
    },
    { onRefused: log },
  );
  await log(checked.log);
  return checked;
}
