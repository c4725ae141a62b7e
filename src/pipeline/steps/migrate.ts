import { runReleaseMigration } from "../migration.js";
import { readRoster, type Step } from "./context.js";
import { targetDeployBody } from "./fan-out.js";

/**
 * `[deploy] migrate`: once, on the first target, in the built image with the first target's env
 * and limits, after the lock is held and before fan_out switches anything (../migration.ts).
 */
export const migrateStep: Step = async (state, ctx) => {
  const command = state.manifest?.declarations?.migrate;
  if (!command) return { message: "no [deploy] migrate declared" };
  const target = state.targets![0]!;
  const supervisor = (await readRoster(state, ctx)).find((s) => s.name === target.supervisor)!;
  let pullToken: string | undefined;
  const registry = ctx.deps.registry;
  if (registry?.pullToken) {
    pullToken = await registry.pullToken(state.plan.request.tenant, state.appUuid!);
    ctx.rememberSecret(pullToken);
  }
  const body = targetDeployBody(state, target, undefined, pullToken);
  const { log, flush } = ctx.stepLog("migrate");
  try {
    const client = ctx.deps.supervisorClient(supervisor);
    return await runReleaseMigration(
      client,
      target.supervisor,
      state.runAs ?? state.appUuid!,
      body,
      command,
      log,
    );
  } finally {
    await flush();
  }
};
