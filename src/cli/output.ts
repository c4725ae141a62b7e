import { formatBytes, formatPlan } from "./plan.js";
import type { PushResult } from "./push.js";

/** Handlers return data; these turn it into what a person reads on stdout. */
export function formatPushResult(result: PushResult): string {
  if (result.dryRun) return formatPlan(result.plan);
  const rows: [string, string][] = [
    ["app", `${result.name} (${result.plan.runtime})`],
    ["app id", result.appId],
    ["version", `v${result.version}`],
    ["latest", result.latest === null ? "?" : `v${result.latest}`],
    ["files", `${result.files} (${formatBytes(result.bytes)})`],
    ["store", result.store],
    ["url", result.url],
  ];
  if (result.plan.imageTag) rows.splice(5, 0, ["image", result.plan.imageTag]);
  const lines = [
    `pushed ${result.name} v${result.version}`,
    ...rows.map(([k, v]) => `  ${k.padEnd(8)} ${v}`),
  ];
  if (result.withdrawn) {
    lines.push(
      `  note: v${result.version} failed to start in ${result.withdrawn.environment} (${result.withdrawn.error}),`,
      `        so latest is ${result.latest === null ? "unset" : `back on v${result.latest}`}; --keep-latest keeps it on a failed version`,
    );
  } else if (result.latest !== null && result.latest !== result.version) {
    lines.push(`  note: a parallel push published v${result.latest}, so latest stays there`);
  }
  return `${lines.join("\n")}\n`;
}

/** The same result for scripts (`--json`): the plan's steps without file contents. */
export function pushResultJson(result: PushResult): string {
  const steps = result.plan.steps.map((s) =>
    s.kind === "upload-manifest" ? { ...s, content: undefined } : s,
  );
  return `${JSON.stringify({ ...result, plan: { ...result.plan, steps } }, null, 2)}\n`;
}
