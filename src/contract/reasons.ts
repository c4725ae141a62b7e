import type { Contract } from "./types.js";
import { routeLabel } from "./verdict.js";

/**
 * Risky reasons: what a proposed contract adds over the project's baseline that a reviewer may
 * want to see first. Strings as the control plane speaks them: `new env read: X`,
 * `new egress host: H`, `new route: /p`, `new effect: write`. A computed fact is `(dynamic)`.
 */

export const REASON_KINDS = ["env", "egress", "route", "effect"] as const;
export type ReasonKind = (typeof REASON_KINDS)[number];

export interface Reason {
  kind: ReasonKind;
  text: string;
}

export const DYNAMIC = "(dynamic)";

export function riskyReasons(baseline: Contract | undefined, proposed: Contract): Reason[] {
  const out: Reason[] = [];
  const added = (before: string[] | undefined, now: string[]) => {
    const old = new Set(before ?? []);
    return [...new Set(now)].filter((x) => !old.has(x)).sort();
  };
  for (const name of added(baseline?.env.literal, proposed.env.literal))
    out.push({ kind: "env", text: `new env read: ${name}` });
  if (proposed.env.dynamic && !baseline?.env.dynamic)
    out.push({ kind: "env", text: `new env read: ${DYNAMIC}` });
  for (const host of added(baseline?.egress.hosts, proposed.egress.hosts))
    out.push({ kind: "egress", text: `new egress host: ${host}` });
  if (proposed.egress.dynamic && !baseline?.egress.dynamic)
    out.push({ kind: "egress", text: `new egress host: ${DYNAMIC}` });
  for (const route of added(baseline?.routes.map(routeLabel), proposed.routes.map(routeLabel)))
    out.push({ kind: "route", text: `new route: ${route}` });
  if (proposed.routesDynamic && !baseline?.routesDynamic)
    out.push({ kind: "route", text: `new route: ${DYNAMIC}` });
  const wroteBefore = baseline !== undefined && !baseline.properties.readOnly;
  if (!proposed.properties.readOnly && !wroteBefore) out.push({ kind: "effect", text: "new effect: write" });
  return out;
}
