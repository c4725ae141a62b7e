import { type ProofRow, resolveRef, scanLedger } from "../contract/ledger.js";
import { exportMarkdown, exportSvg, formatCard, formatDiff, formatListRow } from "../contract/render.js";
import { TabbifyError } from "../core/errors.js";
import type { GrantView, PlanView } from "../node/deploy-review-store.js";

/** `tcli proofs …` over `.tabbify/proofs.jsonl`, and the texts of review and grants. */

/** Recent rows, newest last, each with its verdict against the row before it. */
export async function proofsList(ledger: string, limit: number): Promise<string> {
  const out: string[] = [];
  let prev: ProofRow | undefined;
  await scanLedger(ledger, (row) => {
    out.push(formatListRow(row, prev));
    if (out.length > limit) out.shift();
    prev = row;
  });
  if (out.length === 0) return "no proof rows yet: deploy first (tcli deploy)\n";
  return out.join("");
}

export async function proofsShow(ledger: string, ref: string): Promise<string> {
  const { row, baseline } = await resolveRef(ledger, ref);
  return formatCard(row, baseline);
}

export async function proofsDiff(ledger: string, a: string, b: string): Promise<string> {
  const [from, to] = [await resolveRef(ledger, a), await resolveRef(ledger, b)];
  return formatDiff(from.row, to.row);
}

export async function proofsExport(ledger: string, format: string, ref: string): Promise<string> {
  const { row, baseline } = await resolveRef(ledger, ref);
  if (format === "md") return exportMarkdown(row, baseline);
  if (format === "svg") return exportSvg(row, baseline);
  throw new TabbifyError("USAGE", `--format must be md or svg, not ${format.slice(0, 20)}`);
}

export function formatPlan(p: PlanView): string {
  const lines = [
    `plan ${p.id}: ${p.status}${p.mode ? ` (${p.mode})` : ""}`,
    `  project   ${p.projectName} (region ${p.region})`,
    `  baseline  ${p.baselineSha ?? "(first deploy)"}`,
    `  proposed  ${p.proposedSha}`,
    ...p.grantCoverage.coveredReasons.map((r) => `  covered by a grant: ${r}`),
    ...p.grantCoverage.uncoveredReasons.map((r) => `  needs review:       ${r}`),
    ...(p.grantId ? [`  grant     ${p.grantId}`] : []),
    `  expires   ${p.expiresAt}`,
  ];
  if (p.status === "approved") lines.push("next: run tcli deploy again");
  return `${lines.join("\n")}\n`;
}

export function formatGrants(grants: GrantView[]): string {
  if (grants.length === 0) return "no grants\n";
  return grants
    .map(
      (g) =>
        `${g.id}  ${g.projectName}  ${g.status}  from plan ${g.sourcePlanId.slice(0, 8)}\n${g.reasons.map((r) => `    ${r}\n`).join("")}`,
    )
    .join("");
}
