import { join, relative } from "node:path";
import { analyseHandler } from "../contract/analyse.js";
import { factsOf } from "../contract/facts.js";
import { appendProofRow, LEDGER_FILE, type ProofRow, scanLedger } from "../contract/ledger.js";
import { formatCard } from "../contract/render.js";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { DeployClient, type PlanRequired, type SessionAccepted } from "../node/deploy-client.js";
import { bundleHandler } from "./deploy-bundle.js";
import { findHandler, otherDeployPath, readDotEnv, serviceName } from "./deploy-discover.js";
import { driftOf, readDeployState, writeDeployState } from "./deploy-state.js";

/**
 * `tcli deploy`: find the handler, derive its contract, check drift, open a session with the
 * contract (the node may answer with a review plan instead), bundle, upload with the session's
 * own credential, release, wait for ready, then record the proof row and print the card.
 * Exit codes: 0 ok, 1 failed or review required, 2 drift, 3 not ready in time, 4 failed to start.
 */

export const DEPLOY_PLAN = "process";

export interface DeployOptions {
  dir: string;
  nodeUrl: string;
  token: string | undefined;
  region?: string;
  confirm: boolean;
  wait: boolean;
  waitTimeoutMs: number;
  out: (text: string) => void;
}

export interface DeployOutcome {
  exitCode: 0 | 1 | 2 | 3 | 4;
  service?: string;
  appUrl?: string;
  digest?: string;
  contractSha?: string;
  planId?: string;
}

/** The tenant a token acts for, read locally (drift is decided before any request). */
export function scopeOfToken(token: string | undefined): string {
  const parts = token?.split(".") ?? [];
  if (parts.length !== 3) return "admin";
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as {
      network?: unknown;
      sub?: unknown;
    };
    const tenant = typeof claims.network === "string" ? claims.network : claims.sub;
    return typeof tenant === "string" ? tenant.toLowerCase() : "admin";
  } catch {
    return "admin";
  }
}

/**
 * Appends this deploy's proof row to the directory's ledger; answers it with the service's
 * previous row, the baseline its card compares against.
 */
export async function recordDeployRow(
  dir: string,
  handler: string,
  service: string,
  analysis: Parameters<typeof factsOf>[0],
): Promise<{ row: ProofRow; baseline: ProofRow | undefined }> {
  const ledger = join(dir, LEDGER_FILE);
  let baseline: ProofRow | undefined;
  await scanLedger(ledger, (row) => {
    if (row.serviceName === service) baseline = row;
  });
  const row: ProofRow = {
    ts: Date.now(),
    kind: "deploy",
    handlerPath: relative(dir, handler),
    serviceName: service,
    facts: factsOf(analysis),
  };
  await appendProofRow(ledger, row);
  return { row, baseline };
}

export function formatPlanRequired(service: string, plan: PlanRequired): string {
  const lines = [
    `review required: the contract of ${service} expands what it may touch`,
    `  plan      ${plan.planId}`,
    `  review    ${plan.reviewUrl}`,
    `  baseline  ${plan.baselineSha ?? "(first deploy)"}`,
    `  proposed  ${plan.proposedSha}`,
    ...plan.grantCoverage.coveredReasons.map((r) => `  covered by a grant: ${r}`),
    ...plan.grantCoverage.uncoveredReasons.map((r) => `  needs review:       ${r}`),
    `next: tcli review ${plan.planId} --approve [--grant]   (or --reject), then run tcli deploy again`,
  ];
  return `${lines.join("\n")}\n`;
}

export async function deployHandler(opts: DeployOptions): Promise<DeployOutcome> {
  const { dir, out } = opts;
  const handler = await findHandler(dir);
  if (!handler) {
    const other = await otherDeployPath(dir);
    throw new TabbifyError(
      "HANDLER_NOT_FOUND",
      other ?? `no handler.ts, handler.tsx, handler.jsx or handler.js in ${dir} or ${join(dir, "src")}`,
    );
  }
  const service = await serviceName(dir);
  const env = await readDotEnv(dir);
  const analysis = await analyseHandler(handler);
  const { contract } = analysis;
  const state = await readDeployState(dir);
  const saved = state.services[service];
  const region = opts.region ?? saved?.region ?? "default";
  const managedEnv = (
    contract.env.dynamic ? Object.keys(env) : contract.env.literal.filter((n) => n in env)
  ).sort();
  const scope = scopeOfToken(opts.token);
  const drift = driftOf(saved, { node: opts.nodeUrl, scope, region, plan: DEPLOY_PLAN, managedEnv });
  if (drift.length > 0 && !opts.confirm) {
    out(
      `drift: ${service} has shifted since its last deploy; nothing was changed\n${drift.map((d) => `  ${d}\n`).join("")}` +
        "next: re-run with --confirm to rebind (the old service is never deleted)\n",
    );
    return { exitCode: 2, service };
  }

  out(`deploying ${service} (${relative(dir, handler)}) to region ${region} on ${opts.nodeUrl}\n`);
  out(`contract ${analysis.contractSha.slice(0, 12)} (${contract.proofLevel})\n`);
  const client = new DeployClient(opts.nodeUrl, opts.token);
  const pending = state.pendingPlans?.[service];
  const planId = pending && pending.proposedSha === analysis.contractSha ? pending.id : undefined;
  const answer = await client.openSession({
    projectName: service,
    region,
    contract,
    contractSha256: analysis.contractSha,
    ...(planId ? { planId } : {}),
  });
  if (answer.status === "plan_required") {
    state.pendingPlans = {
      ...state.pendingPlans,
      [service]: { id: answer.planId, proposedSha: answer.proposedSha },
    };
    await writeDeployState(dir, state);
    out(formatPlanRequired(service, answer));
    return { exitCode: 1, service, planId: answer.planId, contractSha: analysis.contractSha };
  }
  const session: SessionAccepted = answer;
  const bundle = join(dir, ".tabbify", "build", service, "handler.mjs");
  await bundleHandler(handler, bundle);
  const { digest } = await client.uploadBundle(session, bundle);
  out(`uploaded ${digest}\n`);
  const sent: Record<string, string> = {};
  for (const name of managedEnv) sent[name] = env[name]!;
  await client.release(session, sent);

  if (opts.wait) {
    const deadline = performance.now() + opts.waitTimeoutMs;
    for (;;) {
      const status = await client.status(session);
      if (status.state === "ready") break;
      if (status.state === "failed") {
        out(`failed: ${service} did not start\n${status.detail ?? ""}\n`);
        return { exitCode: 4, service, digest, contractSha: analysis.contractSha };
      }
      if (performance.now() >= deadline) {
        out(
          `timed out: ${service} was not ready after ${Math.round(opts.waitTimeoutMs / 1000)} s (state ${status.state})\n`,
        );
        return { exitCode: 3, service, digest, contractSha: analysis.contractSha };
      }
      await sleep(200);
    }
  }

  const { row, baseline } = await recordDeployRow(dir, handler, service, analysis);
  await client.sendProof(session, row).catch((err: unknown) => {
    out(`warning: the node did not keep the proof row (${(err as Error).message})\n`);
  });
  state.services[service] = {
    node: opts.nodeUrl,
    scope,
    region,
    plan: DEPLOY_PLAN,
    reviewPlanId: planId ?? null,
    appUuid: session.appUuid,
    managedEnv,
    contractSha: analysis.contractSha,
    deployedAt: new Date(row.ts).toISOString(),
  };
  if (state.pendingPlans) delete state.pendingPlans[service];
  await writeDeployState(dir, state);
  out(formatCard(row, baseline));
  out(`${opts.wait ? "ready" : "accepted (not waiting)"}: ${session.appUrl}\ndigest: ${digest}\n`);
  return { exitCode: 0, service, appUrl: session.appUrl, digest, contractSha: analysis.contractSha };
}
