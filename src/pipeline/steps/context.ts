import type { PipelineDeps } from "../deps.js";
import type { DeployPlan, DeployTarget, RosterSupervisor, StepName, TargetResult } from "../plan.js";
import type { TabbifyManifest } from "../tabbify-toml.js";

/** What one deploy's steps have learned so far; each step reads its predecessors' fields. */
export interface DeployState {
  plan: DeployPlan;
  cloneToken?: string;
  /** The user the clone token goes with, for a host credential (`--git-credentials`). */
  cloneUsername?: string;
  manifestToml?: string;
  manifest?: TabbifyManifest;
  appUuid?: string;
  /** The environment this build rolls to: the first declared, else prod (capability_check). */
  environment?: string;
  /** The uuid the targets run it under: the app's for prod, the environment's otherwise. */
  runAs?: string;
  supervisors?: RosterSupervisor[];
  builder?: RosterSupervisor;
  targets?: DeployTarget[];
  imageRef?: string;
  digest?: string;
  commitSha?: string;
  buildStartedAt?: string;
  buildFinishedAt?: string;
  results: TargetResult[];
  /** Set by acquire_lock: lets go of the deploy lock when the deploy ends. */
  releaseLock?: () => Promise<void>;
  logEvents: number;
  logDropped: number;
}

/** What a step reports on success: its `step_finished` message and data. */
export type StepOutcome = { message?: string; data?: Record<string, unknown> } | undefined;

/**
 * The executor's services a step may use, bound to the running deploy. Steps record through
 * these rather than the store directly, so secrets are scrubbed and log lines stay in order.
 */
export interface StepContext {
  deps: PipelineDeps;
  /** Adds a secret to the set scrubbed from every recorded message of this deploy. */
  rememberSecret(secret: string): void;
  scrub(text: string): string;
  /** A step's log: `log` queues a `log` event, `flush` waits until the queued ones are recorded. */
  stepLog(step: StepName): { log: (line: string) => void; flush: () => Promise<void> };
}

export type Step = (state: DeployState, ctx: StepContext) => Promise<StepOutcome>;

/** The roster, read once per deploy: every step of a deploy sees the same supervisors. */
export async function readRoster(state: DeployState, ctx: StepContext): Promise<RosterSupervisor[]> {
  state.supervisors ??= await ctx.deps.roster.supervisors();
  return state.supervisors;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
