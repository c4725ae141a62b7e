import { DEFAULT_ENVIRONMENT } from "../plan.js";
import type { Step } from "./context.js";

/**
 * Takes the (app, environment) deploy lock before any target changes: one rollout of an
 * environment at a time, the others queued oldest first (the record says `queued` meanwhile and
 * names whom it waits for), or failed DEPLOY_LOCKED with `noQueue`. The executor lets go of it
 * when the deploy ends, however it ends.
 */
export const acquireLock: Step = async (state, ctx) => {
  const lock = ctx.deps.lock;
  if (!lock) return { message: "no deploy lock: rollouts of this app may overlap" };
  const appUuid = state.appUuid!;
  const environment = state.environment ?? DEFAULT_ENVIRONMENT;
  const deployId = state.plan.id;
  const { log, flush } = ctx.stepLog("acquire_lock");
  const { queued_ms } = await lock.acquire(
    appUuid,
    environment,
    deployId,
    `deploy ${deployId} (${state.plan.request.trigger})`,
    {
      wait: state.plan.request.noQueue !== true,
      onQueued: async (held) => {
        log(`queued behind ${held.holder}`);
        await flush();
        await ctx.deps.store.update(deployId, { status: "queued" });
      },
    },
  );
  state.releaseLock = () => lock.release(appUuid, environment, deployId);
  if (queued_ms > 0) await ctx.deps.store.update(deployId, { status: "running" });
  await flush();
  return {
    message: `holds the deploy lock of ${environment}${queued_ms > 0 ? ` after ${queued_ms} ms in the queue` : ""}`,
    data: { environment, queued_ms },
  };
};
