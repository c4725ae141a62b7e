import { pickBuilder } from "../plan.js";
import { readRoster, type Step } from "./context.js";

/** Chooses the supervisor that builds: the request's or manifest's hint, else by tag (see plan.ts). */
export const pickBuilderStep: Step = async (state, ctx) => {
  const hint = state.plan.request.builder ?? state.manifest!.build.builder;
  state.builder = pickBuilder(hint, await readRoster(state, ctx));
  return { message: `builder: ${state.builder.name}`, data: { builder: state.builder.name } };
};
