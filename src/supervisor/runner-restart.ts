/**
 * Restarting runners onto the supervisor's own release (`tabbify upgrade --restart-runners`):
 * each app's runner hands the app to a new runner process of this supervisor's `tabbify.js`
 * without a refused or failed request (runner/succession.ts), one app at a time, each under its
 * app lock. The record then names the new runner, so its predecessor's exit is not a death.
 */
import { TabbifyError } from "../core/errors.js";
import { controlRequest } from "../runner/control.js";
import type { SupervisorContext } from "./context.js";
import { prove } from "./proof.js";
import { defaultRunnerEntry } from "./spawn.js";

export interface RunnerRestarts {
  restarted: { uuid: string; pid_before: number; pid: number; workload_pid: number | null }[];
  /** Left for the app's next swap, with why (stopped, stateful, a runner from before handoffs…). */
  skipped: { uuid: string; reason: string }[];
  failed: { uuid: string; error: string }[];
}

type Outcome = { restarted: RunnerRestarts["restarted"][number] } | { skipped: string };

/** Hands one app to a new runner; a reason instead when it is left as it is. */
export async function restartRunner(ctx: SupervisorContext, uuid: string): Promise<Outcome> {
  const record = await ctx.records.read(uuid);
  if (!record || record.stopped || record.pid === null) return { skipped: "not running" };
  if ((await prove(record)).kind !== "ours") return { skipped: "its runner does not answer as this app's" };
  const before = record.pid;
  const reply = await controlRequest(
    record.control_sock,
    { cmd: "handoff", entry: ctx.opts.runnerEntry ?? defaultRunnerEntry },
    // The new runner's workload boots and passes its health check before it answers.
    { timeoutMs: (ctx.opts.startTimeoutMs ?? 30_000) + 60_000 },
  );
  if (reply.reply === "err") {
    if (reply.message.startsWith("unknown cmd"))
      return { skipped: "its runner predates runner handoffs: the app's next swap replaces it" };
    if (reply.message.startsWith("cannot hand the app over")) return { skipped: reply.message };
    throw new TabbifyError("RUNNER_RESTART_FAILED", reply.message);
  }
  if (reply.reply !== "handed-over")
    throw new TabbifyError("RUNNER_RESTART_FAILED", `the runner answered ${reply.reply}`);
  record.pid = reply.pid;
  record.workload_pid = reply.workload_pid;
  record.spawned_at = new Date().toISOString();
  await ctx.records.write(record);
  ctx.opts.logger.info("runner handed its app to a new runner", { uuid, pid_before: before, pid: reply.pid });
  return { restarted: { uuid, pid_before: before, pid: reply.pid, workload_pid: reply.workload_pid } };
}

/** Every app's runner in turn; one that fails keeps its old runner and the rest go on. */
export async function restartRunners(ctx: SupervisorContext): Promise<RunnerRestarts> {
  const result: RunnerRestarts = { restarted: [], skipped: [], failed: [] };
  for (const uuid of await ctx.records.list()) {
    try {
      const outcome = await ctx.locks.run(uuid, () => restartRunner(ctx, uuid));
      if ("restarted" in outcome) result.restarted.push(outcome.restarted);
      else result.skipped.push({ uuid, reason: outcome.skipped });
    } catch (err) {
      result.failed.push({ uuid, error: (err as Error).message });
    }
  }
  return result;
}
