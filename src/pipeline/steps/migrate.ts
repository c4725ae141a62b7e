import { runReleaseMigration } from "../migration.js";
import { DEFAULT_ENVIRONMENT } from "../plan.js";
import { readRoster, type Step } from "./context.js";
import { registerRelease, targetDeployBody } from "./fan-out.js";

/**
 * `[deploy] migrate`: once, on the first target, in the built image with the first target's env
 * and limits and the release it is about to become (TABBIFY_RELEASE and its manifest), after the
 * lock is held and before fan_out switches anything (../migration.ts). Audited as the system's
 * doing under the deploy, whose `deploy.accepted` row names who asked for it.
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
  const release = await registerRelease(state, ctx);
  const body = targetDeployBody(state, target, release, pullToken);
  const { log, flush } = ctx.stepLog("migrate");
  const audit = ctx.deps.audit;
  try {
    const client = ctx.deps.supervisorClient(supervisor);
    return await runReleaseMigration(
      client,
      target.supervisor,
      state.runAs ?? state.appUuid!,
      body,
      command,
      log,
      audit && {
        log: audit,
        subject: {
          deployId: state.plan.id,
          actor: "system",
          appUuid: state.appUuid!,
          environment: state.environment ?? DEFAULT_ENVIRONMENT,
          digest: state.digest!,
          ...(release ? { release: release.id } : {}),
        },
      },
    );
  } finally {
    await flush();
  }
};
