import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { ImageSignatures } from "./deps.js";

/** What the image to roll out is: its repository's tenant and app, and its manifest digest. */
export interface SignedImageRef {
  tenant: string;
  appUuid: string;
  digest: string;
  /** The environment the image is about to run in: it picks the policy. */
  environment: string;
}

/** A passed (or, under `warn`, tolerated) check: the step's log line, message and data. */
export interface SignatureCheck {
  log: string;
  message: string;
  data: Record<string, unknown>;
}

/**
 * The `verify_signature` decision, shared by a build's deploy and by rollbacks and promotions:
 * the digest must carry a signature by one of the tenant's trusted keys. Under `require` anything
 * else throws SIGNATURE_INVALID (the caller changes nothing); under `warn` it returns why the
 * image is not trusted and the rollout goes on. `scrub` cleans an error message before it is
 * recorded; `onRefused` sees the refusal's log line before the throw.
 */
export async function checkImageSignature(
  signatures: ImageSignatures,
  image: SignedImageRef,
  hooks: { scrub?: (text: string) => string; onRefused?: (line: string) => Promise<void> } = {},
): Promise<SignatureCheck> {
  const { environment } = image;
  const policy = signatures.policy(environment);
  try {
    const signature = await signatures.verify(image.tenant, image.appUuid, image.digest);
    return {
      log: `${image.digest} is signed by a trusted key of ${image.tenant} (signature ${signature})`,
      message: `signature verified (${environment}: ${policy})`,
      data: { checked: true, environment, policy, verified: true, signature },
    };
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const reason = hooks.scrub ? hooks.scrub(raw) : raw;
    if (policy === "require") {
      await hooks.onRefused?.(`refused: ${reason}`);
      if (isTabbifyError(err, "SIGNATURE_INVALID")) throw err;
      throw new TabbifyError("SIGNATURE_INVALID", `verifying ${image.digest}: ${reason}`);
    }
    return {
      log: `warning: ${reason}`,
      message: `NOT verified, deploying anyway (${environment}: warn): ${reason}`,
      data: { checked: true, environment, policy, verified: false, reason },
    };
  }
}
