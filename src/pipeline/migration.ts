import { TabbifyError } from "../core/errors.js";
import type {
  MigrationAudit,
  SupervisorClient,
  SupervisorDeployRequest,
  SupervisorMigrateReply,
} from "./deps.js";

/** What the audit rows say the migration belonged to. */
export interface MigrationSubject {
  deployId: string;
  actor: string;
  appUuid: string;
  environment: string;
  digest: string;
  release?: string;
}

/**
 * The migration gate: a release's `[deploy] migrate` command runs once, on the first target, in
 * the release about to roll (the same body its deploy gets), before any target switches. Its log
 * tail goes to the deploy's events through `log`; anything but exit code 0 throws
 * MIGRATION_FAILED, which fails the deploy at step `migrate` with every target on the old release.
 *
 * With `audit`, the run is two rows of the audit chain under `deploy:<id>`: `deploy.migrate.started`
 * before the command runs and `deploy.migrate.finished` with its outcome, exit code and duration.
 * Neither carries the env, the command's arguments nor its output: those may hold secrets.
 */
export async function runReleaseMigration(
  client: SupervisorClient,
  target: string,
  runAs: string,
  body: SupervisorDeployRequest,
  command: string[],
  log: (line: string) => void,
  audit?: { log: MigrationAudit; subject: MigrationSubject },
): Promise<{ message: string; data: Record<string, unknown> }> {
  if (!client.migrate) {
    throw new TabbifyError("MIGRATION_FAILED", `supervisor ${target} cannot run migrations`);
  }
  const about = audit && {
    app_uuid: audit.subject.appUuid,
    environment: audit.subject.environment,
    digest: audit.subject.digest,
    ...(audit.subject.release ? { release: audit.subject.release } : {}),
    target,
    program: command[0],
  };
  const record = (action: string, after: Record<string, unknown>) =>
    audit?.log.record({
      actor: audit.subject.actor,
      action,
      subject: `deploy:${audit.subject.deployId}`,
      after,
    });
  await record("deploy.migrate.started", { ...about });
  const started = performance.now();
  let reply: SupervisorMigrateReply;
  try {
    reply = await client.migrate(runAs, body, command);
  } catch (err) {
    await record("deploy.migrate.finished", {
      ...about,
      outcome: "error",
      code: err instanceof TabbifyError ? err.code : "INTERNAL",
      duration_ms: Math.round(performance.now() - started),
    });
    throw err;
  }
  for (const line of reply.log_tail) log(line);
  const data = {
    target,
    exit_code: reply.exit_code,
    timed_out: reply.timed_out,
    migration_ms: reply.duration_ms,
    ...(reply.limit_reason ? { limit_reason: reply.limit_reason } : {}),
  };
  const how =
    reply.exit_code === 0
      ? "exited 0"
      : reply.timed_out
        ? "timed out"
        : reply.limit_reason === "oom"
          ? "was killed for going over its memory limit (oom)"
          : reply.exit_code === null
            ? `was killed (${reply.signal ?? "no signal"})`
            : `exited ${reply.exit_code}`;
  await record("deploy.migrate.finished", {
    ...about,
    outcome:
      reply.exit_code === 0 ? "passed" : reply.timed_out ? "timed_out" : (reply.limit_reason ?? "failed"),
    exit_code: reply.exit_code,
    signal: reply.signal,
    duration_ms: reply.duration_ms,
  });
  if (reply.exit_code === 0) {
    return { message: `${command[0]} exited 0 on ${target}`, data };
  }
  throw new TabbifyError(
    "MIGRATION_FAILED",
    `migration ${command[0]} ${how} on ${target}; every target keeps its release. Last lines: ${reply.log_tail.slice(-5).join(" | ")}`,
    data,
  );
}
