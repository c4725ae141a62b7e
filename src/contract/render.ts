import type { ProofRow } from "./ledger.js";
import { type Facts, factPropertyNames } from "./types.js";
import { changeLines, type Delta, routeLabel, type Verdict, verdictOf } from "./verdict.js";

/** The texts a proof row is shown as: the review card, `proofs list` rows, md and svg exports. */

export function provenProperties(f: Facts): string[] {
  return factPropertyNames.filter((p) => f.properties[p]);
}

const none = (xs: string[]): string => (xs.length > 0 ? xs.join(", ") : "(none)");

/** The card printed after a deploy and by `proofs show`. */
export function formatCard(row: ProofRow, baseline: ProofRow | undefined): string {
  const f = row.facts;
  const { verdict, delta } = verdictOf(baseline?.facts, f);
  const lines = [
    `Proof review · ${verdict}`,
    `  handler      ${row.handlerPath}`,
    ...(row.serviceName ? [`  service      ${row.serviceName}`] : []),
    `  kind         ${row.kind}`,
    `  contract     ${f.contractSha}`,
    `  proof level  ${f.proofLevel}`,
    `  proven       ${none(provenProperties(f))}`,
    `  routes       ${none(f.routes.map(routeLabel))}`,
    `  env          ${none(f.envKeys)}`,
    `  egress       ${none(f.egressHosts)}`,
    `  cache        ${none(f.cacheNamespaces)}`,
    `  capabilities ${none(f.capabilities)}`,
    `  verdict      ${verdict} ${baseline ? `against ${baseline.facts.contractSha.slice(0, 8)}` : "(no baseline)"}`,
    ...changeLines(delta).map((l) => `    ${l}`),
  ];
  return `${lines.join("\n")}\n`;
}

/** `proofs list` row: time, kind, sha[0..8], verdict, `Nr/Ne/Nh/Nc/Ncap`. */
export function formatListRow(row: ProofRow, baseline: ProofRow | undefined): string {
  const f = row.facts;
  const { verdict } = verdictOf(baseline?.facts, f);
  const counts = `${f.routes.length}r/${f.envKeys.length}e/${f.egressHosts.length}h/${f.cacheNamespaces.length}c/${f.capabilities.length}cap`;
  return `${new Date(row.ts).toISOString()}  ${row.kind.padEnd(6)}  ${f.contractSha.slice(0, 8)}  ${verdict.padEnd(19)}  ${counts}\n`;
}

/** `proofs diff A B`: B against A. */
export function formatDiff(a: ProofRow, b: ProofRow): string {
  const { verdict, delta } = verdictOf(a.facts, b.facts);
  const lines = changeLines(delta);
  return `${a.facts.contractSha.slice(0, 8)} -> ${b.facts.contractSha.slice(0, 8)}: ${verdict}\n${lines.map((l) => `  ${l}\n`).join("")}`;
}

/** The markdown receipt (SEED-FACTS §6 sections). */
export function exportMarkdown(row: ProofRow, baseline: ProofRow | undefined): string {
  const f = row.facts;
  const { verdict, delta } = verdictOf(baseline?.facts, f);
  const changes = changeLines(delta);
  const bullets = (xs: string[]) => (xs.length > 0 ? xs.map((x) => `- ${x}`).join("\n") : "- (none)");
  return [
    "## Proof review",
    "",
    `- Verdict: ${verdict}`,
    `- Handler: ${row.handlerPath}`,
    `- Service: ${row.serviceName ?? "(none)"}`,
    `- Kind: ${row.kind}`,
    `- Contract: ${f.contractSha}`,
    `- Proof level: ${f.proofLevel}`,
    `- Baseline: ${baseline ? baseline.facts.contractSha : "(none)"}`,
    "",
    "### Proven properties",
    "",
    bullets(provenProperties(f)),
    "",
    "### Surface",
    "",
    `- Routes: ${none(f.routes.map(routeLabel))}`,
    `- Env: ${none(f.envKeys)}`,
    `- Egress: ${none(f.egressHosts)}`,
    `- Cache: ${none(f.cacheNamespaces)}`,
    `- Capabilities: ${none(f.capabilities)}`,
    "",
    "### Changes",
    "",
    bullets(changes),
    "",
  ].join("\n");
}

export const verdictColors: Record<Verdict, string> = {
  safe: "#22c55e",
  safe_with_additions: "#3b82f6",
  breaking: "#ef4444",
};

const escapeXml = (s: string): string =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!,
  );

/** The 320×30 verdict pill: `proven · <verdict>` and up to three proven properties. */
export function exportSvg(row: ProofRow, baseline: ProofRow | undefined): string {
  const { verdict } = verdictOf(baseline?.facts, row.facts);
  const text = ["proven", verdict, ...provenProperties(row.facts).slice(0, 3)].join(" · ");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="30" viewBox="0 0 320 30" role="img" aria-label="${escapeXml(text)}">`,
    `  <rect width="320" height="30" rx="15" ry="15" fill="${verdictColors[verdict]}"/>`,
    `  <text x="160" y="19" fill="#ffffff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="10" text-anchor="middle">${escapeXml(text)}</text>`,
    "</svg>",
    "",
  ].join("\n");
}

export type { Delta };
