import type { StepName } from "../plan.js";
import { acquireLock } from "./acquire-lock.js";
import { buildAndPush } from "./build-and-push.js";
import { capabilityCheck } from "./capability-check.js";
import type { Step } from "./context.js";
import { fanOut } from "./fan-out.js";
import { fetchManifest } from "./fetch-manifest.js";
import { migrateStep } from "./migrate.js";
import { mintToken } from "./mint-token.js";
import { pickBuilderStep } from "./pick-builder.js";
import { verify } from "./verify.js";
import { verifySignature } from "./verify-signature.js";

/** Each step name of a plan (plan.ts orders them) and the function the executor runs for it. */
export const steps: Record<StepName, Step> = {
  mint_token: mintToken,
  fetch_manifest: fetchManifest,
  pick_builder: pickBuilderStep,
  capability_check: capabilityCheck,
  build_and_push: buildAndPush,
  verify_signature: verifySignature,
  acquire_lock: acquireLock,
  migrate: migrateStep,
  fan_out: fanOut,
  verify,
};
