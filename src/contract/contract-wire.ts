import { TabbifyError } from "../core/errors.js";
import type { Contract, ContractProperties, ProofLevel, Route } from "./types.js";

/**
 * A contract as it arrives over the wire, checked field by field and rebuilt (unknown fields
 * dropped, lists sorted), so the node hashes exactly what it stores.
 */

const MAX_ITEMS = 1000;
const MAX_TEXT = 512;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOST = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

const propertyNames: (keyof ContractProperties)[] = [
  "pure",
  "readOnly",
  "stateless",
  "retrySafe",
  "deterministic",
  "hasEgress",
  "noSecretLeakage",
  "noCredentialLeakage",
  "inputValidated",
  "piiContained",
  "idempotent",
  "injectionSafe",
  "stateIsolated",
  "faultCovered",
  "resultSafe",
  "optionalSafe",
];

function bad(field: string, rule: string): TabbifyError {
  return new TabbifyError("CONTRACT_INVALID", `contract.${field}: ${rule}`);
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(field, "must be an object");
  return v as Record<string, unknown>;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== "boolean") throw bad(field, "must be true or false");
  return v;
}

function strings(v: unknown, field: string, pattern?: RegExp): string[] {
  if (!Array.isArray(v) || v.length > MAX_ITEMS)
    throw bad(field, `must be a list of at most ${MAX_ITEMS} strings`);
  for (const s of v) {
    if (typeof s !== "string" || s.length === 0 || s.length > MAX_TEXT)
      throw bad(field, "items must be non-empty strings");
    if (pattern && !pattern.test(s)) throw bad(field, `"${s.slice(0, 64)}" is not allowed here`);
  }
  return [...new Set(v as string[])].sort();
}

export function parseContract(raw: unknown): Contract {
  const c = obj(raw, "(root)");
  if (c.version !== 1) throw bad("version", "must be 1");
  const env = obj(c.env, "env");
  const egress = obj(c.egress, "egress");
  const cache = obj(c.cache, "cache");
  const sandbox = obj(c.sandbox, "sandbox");
  const props = obj(c.properties, "properties");
  if (!Array.isArray(c.routes) || c.routes.length > MAX_ITEMS) throw bad("routes", "must be a list");
  const routes: Route[] = c.routes.map((r, i) => {
    const o = obj(r, `routes[${i}]`);
    if (typeof o.pattern !== "string" || o.pattern.length === 0 || o.pattern.length > MAX_TEXT)
      throw bad(`routes[${i}].pattern`, "must be a non-empty string");
    return { pattern: o.pattern, isPrefix: bool(o.isPrefix, `routes[${i}].isPrefix`) };
  });
  const seen = new Map(routes.map((r) => [`${r.pattern}\u0000${r.isPrefix}`, r]));
  const properties = {} as ContractProperties;
  for (const name of propertyNames) properties[name] = bool(props[name], `properties.${name}`);
  const level = c.proofLevel;
  if (level !== "complete" && level !== "partial" && level !== "none")
    throw bad("proofLevel", "must be complete, partial or none");
  return {
    version: 1,
    routes: [...seen.values()].sort((a, b) =>
      a.pattern === b.pattern ? Number(a.isPrefix) - Number(b.isPrefix) : a.pattern < b.pattern ? -1 : 1,
    ),
    routesDynamic: bool(c.routesDynamic, "routesDynamic"),
    env: {
      literal: strings(env.literal, "env.literal", ENV_NAME),
      dynamic: bool(env.dynamic, "env.dynamic"),
    },
    egress: {
      hosts: strings(egress.hosts, "egress.hosts", HOST),
      dynamic: bool(egress.dynamic, "egress.dynamic"),
    },
    cache: {
      namespaces: strings(cache.namespaces, "cache.namespaces"),
      dynamic: bool(cache.dynamic, "cache.dynamic"),
    },
    sandbox: { capabilities: strings(sandbox.capabilities, "sandbox.capabilities") },
    properties,
    proofLevel: level as ProofLevel,
    provenSpecs: strings(c.provenSpecs ?? [], "provenSpecs"),
  };
}
