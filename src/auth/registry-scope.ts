import { TabbifyError } from "../core/errors.js";
import { repositoryAllowed } from "./namespace.js";

/**
 * One entry of a registry token's `access` claim, in the Docker token format:
 * `{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}`.
 */
export interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

/** The actions a repository grant may carry, in the order they are written. */
export const repositoryActions = ["pull", "push", "delete"] as const;
export type RepositoryAction = (typeof repositoryActions)[number];

/** `registry:catalog:*`: the right to list every repository (`GET /v2/_catalog`). */
export const catalogAccess: ResourceAccess = { type: "registry", name: "catalog", actions: ["*"] };

/** More scopes than this in one token request is not a client asking for what it needs. */
export const maxScopes = 64;
const maxScopeLength = 1024;

const typeGrammar = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;
const actionGrammar = /^(?:[a-z]+|\*)$/;

/**
 * Parses the `scope` parameters of a token request (the Docker token spec's grammar:
 * `type[(class)]:name:action[,action…]`, several scopes per parameter separated by spaces; the
 * name may itself hold `:`, as in `host:5000/repo`, so the type ends at the first `:` and the
 * actions start after the last). Throws SCOPE_INVALID for one that does not parse; whether the
 * caller may have it is `grantFor`'s question, not this one's.
 */
export function parseScopes(values: readonly string[]): ResourceAccess[] {
  const out: ResourceAccess[] = [];
  for (const value of values) {
    for (const scope of value.split(" ")) {
      if (scope === "") continue;
      if (out.length >= maxScopes) {
        throw new TabbifyError("SCOPE_INVALID", `a token request may name at most ${maxScopes} scopes`);
      }
      out.push(parseScope(scope));
    }
  }
  return out;
}

function parseScope(scope: string): ResourceAccess {
  const shown = JSON.stringify(scope.slice(0, 200));
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (scope.length > maxScopeLength || first <= 0 || last === first) {
    throw new TabbifyError("SCOPE_INVALID", `scope ${shown} is not <type>:<name>:<actions>`);
  }
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = scope
    .slice(last + 1)
    .split(",")
    .filter((a) => a !== "");
  if (!typeGrammar.test(type) || name === "" || !actions.every((a) => actionGrammar.test(a))) {
    throw new TabbifyError(
      "SCOPE_INVALID",
      `scope ${shown} is not <type>:<name>:<action>[,<action>…] (e.g. repository:acme/app:pull,push)`,
    );
  }
  return { type, name, actions };
}

/**
 * What a tenant gets of what it asked for, as Distribution's token servers do: anything it may
 * not have is dropped from the grant, never refused. A tenant may have `pull`, `push` and
 * `delete` (`*` means all three) on repositories in its own namespace, and nothing else: no
 * other tenant's repositories, no `registry:catalog:*`. Entries for one repository are merged.
 */
export function grantFor(tenant: string, requested: readonly ResourceAccess[]): ResourceAccess[] {
  const byName = new Map<string, Set<RepositoryAction>>();
  for (const want of requested) {
    if (want.type !== "repository" || !repositoryAllowed(tenant, want.name)) continue;
    const actions = byName.get(want.name) ?? new Set<RepositoryAction>();
    for (const action of want.actions) {
      if (action === "*") for (const a of repositoryActions) actions.add(a);
      else if ((repositoryActions as readonly string[]).includes(action))
        actions.add(action as RepositoryAction);
    }
    if (actions.size > 0) byName.set(want.name, actions);
  }
  return [...byName].map(([name, actions]) => ({
    type: "repository",
    name,
    actions: repositoryActions.filter((a) => actions.has(a)),
  }));
}

/**
 * The scopes a robot token is issued with (`tabbify auth token --scope …`): repository scopes in
 * the tenant's own namespace with pull, push, delete or `*`. Anything else is SCOPE_INVALID: a
 * robot limited to what it can never have would be a silent mistake.
 */
export function robotScopes(tenant: string, values: readonly string[]): ResourceAccess[] {
  const parsed = parseScopes(values);
  for (const scope of parsed) {
    const shown = formatScope(scope).slice(0, 200);
    if (scope.type !== "repository" || !repositoryAllowed(tenant, scope.name)) {
      throw new TabbifyError(
        "SCOPE_INVALID",
        `scope ${shown} is not a repository under ${tenant}/ (want repository:${tenant}/<name>:<actions>)`,
      );
    }
    if (!scope.actions.every((a) => a === "*" || (repositoryActions as readonly string[]).includes(a))) {
      throw new TabbifyError("SCOPE_INVALID", `scope ${shown}: actions are pull, push, delete or *`);
    }
  }
  return grantFor(tenant, parsed);
}

/** `grant` less whatever `limits` (a robot token's scopes) do not allow. */
export function limitTo(
  grant: readonly ResourceAccess[],
  limits: readonly ResourceAccess[],
): ResourceAccess[] {
  const out: ResourceAccess[] = [];
  for (const entry of grant) {
    const actions = entry.actions.filter((a) => allows(limits, entry.type, entry.name, a));
    if (actions.length > 0) out.push({ ...entry, actions });
  }
  return out;
}

/** Whether `access` holds `action` on the resource (`*` in a grant holds every action). */
export function allows(
  access: readonly ResourceAccess[],
  type: string,
  name: string,
  action: string,
): boolean {
  return access.some(
    (a) => a.type === type && a.name === name && (a.actions.includes(action) || a.actions.includes("*")),
  );
}

/** `type:name:a,b`, as in a `scope` parameter or a challenge. */
export function formatScope(access: ResourceAccess): string {
  return `${access.type}:${access.name}:${access.actions.join(",")}`;
}

/** Reads an `access` claim back from a verified token; undefined when it is not one. */
export function accessClaim(value: unknown): ResourceAccess[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > maxScopes) return undefined;
  const out: ResourceAccess[] = [];
  for (const entry of value) {
    if (typeof entry !== "object" || entry === null) return undefined;
    const { type, name, actions } = entry as Record<string, unknown>;
    if (typeof type !== "string" || typeof name !== "string" || !Array.isArray(actions)) return undefined;
    if (!actions.every((a): a is string => typeof a === "string")) return undefined;
    out.push({ type, name, actions: [...actions] });
  }
  return out;
}
