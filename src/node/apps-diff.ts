/**
 * JSON merge patch (RFC 7396) and the normalized diff every registry mutation answers with.
 */

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** RFC 7396 §2: objects merge member by member, `null` removes, anything else replaces. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isObject(target) ? structuredClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

export interface Change {
  /** JSON Pointer (RFC 6901) of the changed member. */
  path: string;
  op: "add" | "remove" | "replace";
  from?: unknown;
  to?: unknown;
}

export interface Diff<T> {
  before: T | null;
  after: T | null;
  changes: Change[];
}

/** Fields that move on every write and say nothing about what changed. */
const bookkeeping = new Set(["/updated_at", "/created_at"]);

function pointer(parent: string, key: string): string {
  return `${parent}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Objects are compared member by member (keys in sorted order, so the same change always reads
 * the same); arrays and scalars are compared whole.
 */
function collect(path: string, from: unknown, to: unknown, out: Change[]): void {
  if (isObject(from) && isObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    for (const key of keys) collect(pointer(path, key), from[key], to[key], out);
    return;
  }
  if (bookkeeping.has(path)) return;
  if (from === undefined && to === undefined) return;
  if (from === undefined) out.push({ path, op: "add", to });
  else if (to === undefined) out.push({ path, op: "remove", from });
  else if (!sameJson(from, to)) out.push({ path, op: "replace", from, to });
}

export function diff<T extends object>(before: T | null, after: T | null): Diff<T> {
  const changes: Change[] = [];
  collect("", before ?? undefined, after ?? undefined, changes);
  // A whole document appearing or vanishing is spelled member by member, like any other change.
  if (changes.length === 1 && changes[0]!.path === "") {
    changes.length = 0;
    const side = (before ?? after) as Record<string, unknown>;
    for (const key of Object.keys(side).sort()) {
      const path = pointer("", key);
      if (bookkeeping.has(path)) continue;
      changes.push(before ? { path, op: "remove", from: side[key] } : { path, op: "add", to: side[key] });
    }
  }
  return { before, after, changes };
}
