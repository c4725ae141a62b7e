import { checkCapabilities, resolveTargets } from "../plan.js";
import { readRoster, type Step } from "./context.js";

/** Resolves the targets and refuses the deploy before the build when one cannot run the image. */
export const capabilityCheck: Step = async (state, ctx) => {
  const supervisors = await readRoster(state, ctx);
  const manifest = state.manifest!;
  state.targets = resolveTargets(state.plan.request.targets, manifest.deploy, supervisors, manifest.env);
  checkCapabilities(state.targets, supervisors);
  const summary = state.targets.map((t) => ({ supervisor: t.supervisor, runtime: t.runtime }));
  return {
    message: `targets: ${summary.map((t) => `${t.supervisor}/${t.runtime}`).join(", ")}`,
    data: { targets: summary },
  };
};
