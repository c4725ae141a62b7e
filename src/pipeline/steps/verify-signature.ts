import { isTabbifyError, TabbifyError } from "../../core/errors.js";
import { DEFAULT_ENVIRONMENT } from "../plan.js";
import { errorMessage, type Step } from "./context.js";

/**
 * Before any target switches: the pushed digest must carry a signature by one of the tenant's
 * trusted keys. Under `require` (prod's default) anything else fails the deploy with
 * SIGNATURE_INVALID and nothing is dispatched; under `warn` the deploy goes on and the step's log
 * and data say why the image is not trusted.
 */
export const verifySignature: Step = async (state, ctx) => {
  const signatures = ctx.deps.signatures;
  if (!signatures) return { message: "no signature verification on this pipeline", data: { checked: false } };
  const { request } = state.plan;
  const environment = DEFAULT_ENVIRONMENT;
  const policy = signatures.policy(environment);
  const { log, flush } = ctx.stepLog("verify_signature");
  try {
    const signature = await signatures.verify(request.tenant, state.appUuid!, state.digest!);
    log(`${state.digest} is signed by a trusted key of ${request.tenant} (signature ${signature})`);
    await flush();
    return {
      message: `signature verified (${environment}: ${policy})`,
      data: { checked: true, environment, policy, verified: true, signature },
    };
  } catch (err) {
    const reason = ctx.scrub(errorMessage(err));
    log(`${policy === "require" ? "refused" : "warning"}: ${reason}`);
    await flush();
    if (policy === "require") {
      if (isTabbifyError(err, "SIGNATURE_INVALID")) throw err;
      throw new TabbifyError("SIGNATURE_INVALID", `verifying ${state.digest}: ${reason}`);
    }
    return {
      message: `NOT verified, deploying anyway (${environment}: warn): ${reason}`,
      data: { checked: true, environment, policy, verified: false, reason },
    };
  }
};
