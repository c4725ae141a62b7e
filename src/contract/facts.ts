import type { AnalysisResult } from "./analyse.js";
import type { Contract, Facts } from "./types.js";

/** A proof row's `facts` from an analysis: only contract-derived identifiers and flags. */
export function factsOf(
  analysis: Pick<AnalysisResult, "contract" | "contractSha" | "behaviorPathCount" | "failurePathCount">,
): Facts {
  const c: Contract = analysis.contract;
  const p = c.properties;
  return {
    contractSha: analysis.contractSha,
    proofLevel: c.proofLevel,
    envKeys: [...c.env.literal],
    egressHosts: [...c.egress.hosts],
    cacheNamespaces: [...c.cache.namespaces],
    capabilities: [...c.sandbox.capabilities],
    routes: c.routes.map((r) => ({ pattern: r.pattern, isPrefix: r.isPrefix })),
    properties: {
      retrySafe: p.retrySafe,
      readOnly: p.readOnly,
      deterministic: p.deterministic,
      injectionSafe: p.injectionSafe,
      idempotent: p.idempotent,
      stateIsolated: p.stateIsolated,
      noSecretLeakage: p.noSecretLeakage,
      noCredentialLeakage: p.noCredentialLeakage,
      inputValidated: p.inputValidated,
      piiContained: p.piiContained,
      resultsSafe: p.resultSafe,
      faultCovered: p.faultCovered,
    },
    declaredSpecs: [],
    intentAssertionCount: 0,
    intentDynamic: false,
    behaviorPathCount: analysis.behaviorPathCount,
    failurePathCount: analysis.failurePathCount,
  };
}
