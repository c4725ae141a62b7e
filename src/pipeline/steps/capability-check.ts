import { environmentUuid } from "../../core/address.js";
import { checkCapabilities, DEFAULT_ENVIRONMENT, type RequestedTarget, resolveTargets } from "../plan.js";
import { readRoster, type Step } from "./context.js";

/**
 * Resolves the environment and its targets, and refuses the deploy before the build when one
 * cannot run the image. A build lands in the first `[[environments]]` entry (on its targets;
 * `[[deploy]]` may still name each one's runtime and env), else in prod on today's targets.
 */
export const capabilityCheck: Step = async (state, ctx) => {
  const supervisors = await readRoster(state, ctx);
  const manifest = state.manifest!;
  const first = manifest.declarations?.environments?.[0];
  const requested = state.plan.request.targets;
  let chosen: RequestedTarget[] | undefined = requested;
  if (first && !(requested && requested.length > 0)) {
    chosen = first.targets.map((supervisor) => {
      const runtime = manifest.deploy.find((d) => d.supervisor === supervisor)?.runtime;
      return runtime ? { supervisor, runtime } : { supervisor };
    });
  }
  state.environment = first?.name ?? DEFAULT_ENVIRONMENT;
  state.runAs = environmentUuid(state.appUuid!, state.environment);
  state.targets = resolveTargets(chosen, manifest.deploy, supervisors, manifest.env);
  checkCapabilities(state.targets, supervisors);
  const summary = state.targets.map((t) => ({ supervisor: t.supervisor, runtime: t.runtime }));
  return {
    message: `${state.environment}: targets ${summary.map((t) => `${t.supervisor}/${t.runtime}`).join(", ")}`,
    data: { targets: summary, environment: state.environment },
  };
};
