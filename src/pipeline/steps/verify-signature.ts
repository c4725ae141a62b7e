import { DEFAULT_ENVIRONMENT } from "../plan.js";
import { checkImageSignature } from "../signature-check.js";
import type { Step } from "./context.js";

/**
 * Before any target switches: the pushed digest must carry a signature by one of the tenant's
 * trusted keys. Under `require` (prod's default) anything else fails the deploy with
 * SIGNATURE_INVALID and nothing is dispatched; under `warn` the deploy goes on and the step's log
 * and data say why the image is not trusted.
 */
export const verifySignature: Step = async (state, ctx) => {
  const signatures = ctx.deps.signatures;
  if (!signatures) return { message: "no signature verification on this pipeline", data: { checked: false } };
  const { log, flush } = ctx.stepLog("verify_signature");
  const checked = await checkImageSignature(
    signatures,
    {
      tenant: state.plan.request.tenant,
      appUuid: state.appUuid!,
      digest: state.digest!,
      // The environment this build rolls to (its first declared), whose policy applies.
      environment: state.environment ?? DEFAULT_ENVIRONMENT,
    },
    {
      scrub: ctx.scrub,
      onRefused: async (line) => {
        log(line);
        await flush();
      },
    },
  );
  log(checked.log);
  await flush();
  return { message: checked.message, data: checked.data };
};
