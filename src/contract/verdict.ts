import { type FactProperties, type Facts, factPropertyNames, type ProofLevel, type Route } from "./types.js";

/**
 * What changed between two proof rows and what it means (SEED-FACTS §6, `deriveDelta` and
 * `classify`): set differences of env, egress, cache, capabilities and routes (a route is its
 * pattern plus isPrefix), property flips and the proof level. **breaking** when anything was
 * removed, a property went true → false or the proof level dropped; **safe** when nothing
 * changed or there is no baseline; **safe_with_additions** otherwise.
 */

export type Verdict = "safe" | "safe_with_additions" | "breaking";

export type SurfaceKind = "route" | "env" | "egress" | "cache" | "capability";

export interface SurfaceChange {
  kind: SurfaceKind;
  value: string;
}

export interface Delta {
  added: SurfaceChange[];
  removed: SurfaceChange[];
  /** Properties proven now and not before. */
  gained: (keyof FactProperties)[];
  /** Properties proven before and not now. */
  lost: (keyof FactProperties)[];
  proofLevel?: { from: ProofLevel; to: ProofLevel };
}

const levelRank: Record<ProofLevel, number> = { complete: 2, partial: 1, none: 0 };

/** `/api/*` for a prefix route, the pattern itself for an exact one. */
export function routeLabel(r: Route): string {
  return r.isPrefix ? `${r.pattern}*` : r.pattern;
}

function surface(f: Facts): Map<SurfaceKind, string[]> {
  return new Map<SurfaceKind, string[]>([
    ["route", f.routes.map(routeLabel)],
    ["env", f.envKeys],
    ["egress", f.egressHosts],
    ["cache", f.cacheNamespaces],
    ["capability", f.capabilities],
  ]);
}

export function deriveDelta(base: Facts | undefined, next: Facts): Delta {
  const delta: Delta = { added: [], removed: [], gained: [], lost: [] };
  if (!base) return delta;
  const before = surface(base);
  for (const [kind, values] of surface(next)) {
    const old = new Set(before.get(kind));
    const now = new Set(values);
    for (const v of [...now].sort()) if (!old.has(v)) delta.added.push({ kind, value: v });
    for (const v of [...old].sort()) if (!now.has(v)) delta.removed.push({ kind, value: v });
  }
  for (const name of factPropertyNames) {
    if (!base.properties[name] && next.properties[name]) delta.gained.push(name);
    if (base.properties[name] && !next.properties[name]) delta.lost.push(name);
  }
  if (base.proofLevel !== next.proofLevel) delta.proofLevel = { from: base.proofLevel, to: next.proofLevel };
  return delta;
}

export function isEmptyDelta(d: Delta): boolean {
  return (
    d.added.length === 0 &&
    d.removed.length === 0 &&
    d.gained.length === 0 &&
    d.lost.length === 0 &&
    d.proofLevel === undefined
  );
}

export function classify(base: Facts | undefined, delta: Delta): Verdict {
  if (!base) return "safe";
  const dropped =
    delta.proofLevel !== undefined && levelRank[delta.proofLevel.to] < levelRank[delta.proofLevel.from];
  if (delta.removed.length > 0 || delta.lost.length > 0 || dropped) return "breaking";
  return isEmptyDelta(delta) ? "safe" : "safe_with_additions";
}

export function verdictOf(base: Facts | undefined, next: Facts): { verdict: Verdict; delta: Delta } {
  const delta = deriveDelta(base, next);
  return { verdict: classify(base, delta), delta };
}

/** The `### Changes` lines: `+ route X`, `- env Y`, `+ property L`, `proof level: a -> b`. */
export function changeLines(d: Delta): string[] {
  return [
    ...d.added.map((c) => `+ ${c.kind} ${c.value}`),
    ...d.removed.map((c) => `- ${c.kind} ${c.value}`),
    ...d.gained.map((p) => `+ property ${p}`),
    ...d.lost.map((p) => `- property ${p}`),
    ...(d.proofLevel ? [`proof level: ${d.proofLevel.from} -> ${d.proofLevel.to}`] : []),
  ];
}
