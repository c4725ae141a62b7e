/**
 * The handler contract: what a handler's code may touch, derived by static analysis
 * (`analyse.ts`) and enforced at run time. Field names follow SEED-FACTS §6 (the zigttp contract
 * JSON); every list is sorted and deduplicated so equal contracts have equal bytes.
 */

export interface Route {
  pattern: string;
  isPrefix: boolean;
}

/** Each flag is true only when the analyser proved it; unproven is false. */
export interface ContractProperties {
  pure: boolean;
  readOnly: boolean;
  stateless: boolean;
  retrySafe: boolean;
  deterministic: boolean;
  hasEgress: boolean;
  noSecretLeakage: boolean;
  noCredentialLeakage: boolean;
  inputValidated: boolean;
  piiContained: boolean;
  idempotent: boolean;
  injectionSafe: boolean;
  stateIsolated: boolean;
  faultCovered: boolean;
  resultSafe: boolean;
  optionalSafe: boolean;
}

export type ProofLevel = "complete" | "partial" | "none";

export interface Contract {
  version: 1;
  routes: Route[];
  /** True when the handler matches paths in a way the analyser cannot list. */
  routesDynamic: boolean;
  env: { literal: string[]; dynamic: boolean };
  egress: { hosts: string[]; dynamic: boolean };
  cache: { namespaces: string[]; dynamic: boolean };
  sandbox: { capabilities: string[] };
  properties: ContractProperties;
  proofLevel: ProofLevel;
  provenSpecs: string[];
}

/** The twelve property flags a proof row carries (SEED-FACTS: `resultsSafe`, not `resultSafe`). */
export interface FactProperties {
  retrySafe: boolean;
  readOnly: boolean;
  deterministic: boolean;
  injectionSafe: boolean;
  idempotent: boolean;
  stateIsolated: boolean;
  noSecretLeakage: boolean;
  noCredentialLeakage: boolean;
  inputValidated: boolean;
  piiContained: boolean;
  resultsSafe: boolean;
  faultCovered: boolean;
}

export const factPropertyNames: readonly (keyof FactProperties)[] = [
  "retrySafe",
  "readOnly",
  "deterministic",
  "injectionSafe",
  "idempotent",
  "stateIsolated",
  "noSecretLeakage",
  "noCredentialLeakage",
  "inputValidated",
  "piiContained",
  "resultsSafe",
  "faultCovered",
];

export interface DeclaredSpec {
  name: string;
  discharged: boolean;
  diagnosticCode?: string;
  diagnosticMessage?: string;
  sourceLine?: number;
  sourceColumn?: number;
  sourceSnippet?: string;
}

/** The `facts` object of a proof row. */
export interface Facts {
  contractSha: string;
  proofLevel: ProofLevel;
  envKeys: string[];
  egressHosts: string[];
  cacheNamespaces: string[];
  capabilities: string[];
  routes: Route[];
  properties: FactProperties;
  declaredSpecs: DeclaredSpec[];
  intentAssertionCount: number;
  intentDynamic: boolean;
  behaviorPathCount: number;
  failurePathCount: number;
}

export const PROOF_KINDS = ["deploy", "swap", "check", "perf", "equivalence"] as const;
export type ProofKind = (typeof PROOF_KINDS)[number];

/** One line of `.tabbify/proofs.jsonl` (ledger.ts), as the node keeps it and the dashboard shows it. */
export interface ProofRow {
  /** Unix milliseconds. */
  ts: number;
  kind: ProofKind;
  handlerPath: string;
  serviceName?: string;
  facts: Facts;
  costWorstCase?: number | "unbounded";
  costBodyLimit?: number;
}
