import { errorMessage, readRoster, type Step } from "./context.js";

/**
 * Checks that each accepting target's runner runs the pushed digest, then that `/app/<uuid>`
 * answers through the node; a failure marks only the results it concerns.
 */
export const verify: Step = async (state, ctx) => {
  const supervisors = await readRoster(state, ctx);
  const appUuid = state.runAs ?? state.appUuid!;
  const { log, flush } = ctx.stepLog("verify");
  await Promise.all(
    state.results.map(async (result) => {
      if (!result.success) return;
      const supervisor = supervisors.find((s) => s.name === result.supervisor)!;
      try {
        const status = await ctx.deps.supervisorClient(supervisor).app(appUuid);
        if (status === null) throw new Error("the supervisor no longer knows the app");
        if (status.digest !== state.digest) {
          throw new Error(`runner runs ${status.digest ?? "an unknown digest"}, expected ${state.digest}`);
        }
        log(`${result.supervisor}: runs ${state.digest}`);
      } catch (err) {
        result.success = false;
        result.error = `verify: ${ctx.scrub(errorMessage(err))}`;
        log(`${result.supervisor}: ${result.error}`);
      }
    }),
  );
  if (ctx.deps.probeApp && state.results.some((r) => r.success)) {
    try {
      await ctx.deps.probeApp(appUuid);
      log(`/app/${appUuid} answers`);
    } catch (err) {
      const reason = `verify: /app/${appUuid} does not answer: ${ctx.scrub(errorMessage(err))}`;
      log(reason);
      for (const result of state.results) {
        if (!result.success) continue;
        result.success = false;
        result.error = reason;
      }
    }
  }
  await flush();
  await ctx.deps.store.update(state.plan.id, { results: state.results });
  const ok = state.results.filter((r) => r.success).length;
  return { message: `${ok} of ${state.results.length} targets verified` };
};
