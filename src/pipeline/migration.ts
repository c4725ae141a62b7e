import { TabbifyError } from "../core/errors.js";
import type { SupervisorClient, SupervisorDeployRequest } from "./deps.js";

/**
 * The migration gate: a release's `[deploy] migrate` command runs once, on the first target, in
 * the release about to roll (the same body its deploy gets), before any target switches. Its log
 * tail goes to the deploy's events through `log`; anything but exit code 0 throws
 * MIGRATION_FAILED, which fails the deploy at step `migrate` with every target on the old release.
 */
export async function runReleaseMigration(
  client: SupervisorClient,
  target: string,
  runAs: string,
  body: SupervisorDeployRequest,
  command: string[],
  log: (line: string) => void,
): Promise<{ message: string; data: Record<string, unknown> }> {
  if (!client.migrate) {
    throw new TabbifyError("MIGRATION_FAILED", `supervisor ${target} cannot run migrations`);
  }
  const reply = await client.migrate(runAs, body, command);
  for (const line of reply.log_tail) log(line);
  const data = {
    target,
    exit_code: reply.exit_code,
    timed_out: reply.timed_out,
    migration_ms: reply.duration_ms,
  };
  if (reply.exit_code === 0) {
    return { message: `${command[0]} exited 0 on ${target}`, data };
  }
  const how = reply.timed_out
    ? "timed out"
    : reply.exit_code === null
      ? `was killed (${reply.signal ?? "no signal"})`
      : `exited ${reply.exit_code}`;
  throw new TabbifyError(
    "MIGRATION_FAILED",
    `migration ${command[0]} ${how} on ${target}; every target keeps its release. Last lines: ${reply.log_tail.slice(-5).join(" | ")}`,
    data,
  );
}
