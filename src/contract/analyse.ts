import { readFile, stat } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import ts from "typescript";
import { TabbifyError } from "../core/errors.js";
import { type ModuleFacts, moduleFacts } from "./analyse-module.js";
import { contractSha } from "./canonical.js";
import type { Contract, ContractProperties, Route } from "./types.js";

/**
 * Static analysis of a handler and the local modules it imports into a {@link Contract}. Each
 * module is parsed with the TypeScript compiler API (syntax only, no type check: fast, and it
 * works on .js too); `analyse-module.ts` walks one module's tree. Bare imports (npm packages,
 * node: builtins) are not followed: a package that reaches the network is out of the contract's
 * sight, so a handler that imports one gets `partial`.
 */

export interface AnalysisResult {
  contract: Contract;
  contractSha: string;
  /** Handler-relative paths of every module parsed, handler first. */
  modules: string[];
  /** Why the proof is not complete (dynamic facts, unparsed modules), for the card. */
  notes: string[];
  /** Responses built (behaviour paths) and those with an error status or a throw (failures). */
  behaviorPathCount: number;
  failurePathCount: number;
}

const sourceExtensions = [".ts", ".tsx", ".js", ".jsx", ".mts", ".mjs"];

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** `./x` → `./x.ts`, `./x.js` written for a `.ts` file, or `./x/index.ts`. */
async function resolveLocal(fromFile: string, spec: string): Promise<string | undefined> {
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base];
  const stripped = base.replace(/\.(m?js|jsx)$/, "");
  for (const ext of sourceExtensions) candidates.push(`${stripped}${ext}`);
  for (const ext of sourceExtensions) candidates.push(`${base}/index${ext}`);
  for (const c of candidates) if (await isFile(c)) return c;
  return undefined;
}

function scriptKind(path: string): ts.ScriptKind {
  if (path.endsWith(".tsx")) return ts.ScriptKind.TSX;
  if (path.endsWith(".jsx")) return ts.ScriptKind.JSX;
  if (/\.m?js$/.test(path)) return ts.ScriptKind.JS;
  return ts.ScriptKind.TS;
}

export function parseModule(path: string, text: string): ts.SourceFile {
  return ts.createSourceFile(path, text, ts.ScriptTarget.ES2022, true, scriptKind(path));
}

/** Syntax errors the parser recorded (the tree is still usable, but the proof is not complete). */
function syntaxErrors(sf: ts.SourceFile): string[] {
  const diags = (sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? [];
  return diags.map((d) => {
    const pos = d.start !== undefined ? sf.getLineAndCharacterOfPosition(d.start) : undefined;
    const where = pos ? `:${pos.line + 1}:${pos.character + 1}` : "";
    return `${sf.fileName}${where}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
  });
}

const sortedUnique = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

function sortRoutes(routes: Route[]): Route[] {
  const seen = new Map<string, Route>();
  for (const r of routes) seen.set(`${r.pattern}\u0000${r.isPrefix}`, r);
  return [...seen.values()].sort((a, b) =>
    a.pattern === b.pattern ? Number(a.isPrefix) - Number(b.isPrefix) : a.pattern < b.pattern ? -1 : 1,
  );
}

/** Analyses the handler file and every local module it reaches. */
export async function analyseHandler(handlerFile: string): Promise<AnalysisResult> {
  const root = resolve(handlerFile);
  const rootDir = dirname(root);
  const queue = [root];
  const seen = new Set<string>();
  const facts: ModuleFacts[] = [];
  const notes: string[] = [];
  let unparsed = false;
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if (file === root) {
        throw new TabbifyError("HANDLER_UNREADABLE", `cannot read ${handlerFile}: ${(err as Error).message}`);
      }
      unparsed = true;
      notes.push(`${relative(rootDir, file)}: unreadable`);
      continue;
    }
    const sf = parseModule(relative(rootDir, file) || file, text);
    const errors = syntaxErrors(sf);
    if (errors.length > 0) {
      unparsed = true;
      notes.push(...errors.slice(0, 5));
    }
    const mf = moduleFacts(sf, { isHandler: file === root });
    facts.push(mf);
    for (const spec of mf.localImports) {
      const target = await resolveLocal(file, spec);
      if (target) queue.push(target);
      else {
        unparsed = true;
        notes.push(`${relative(rootDir, file)}: import "${spec}" not found`);
      }
    }
    for (const spec of mf.packageImports)
      notes.push(`${relative(rootDir, file)}: package "${spec}" not analysed`);
  }
  const handlerFacts = facts[0]!;
  if (!handlerFacts.exportsHandler) {
    throw new TabbifyError(
      "HANDLER_EXPORT_MISSING",
      `${handlerFile} exports no handler: export a function (request: Request) => Response as default or as \`handler\``,
    );
  }
  const any = (f: (m: ModuleFacts) => boolean) => facts.some(f);
  const envDynamic = any((m) => m.envDynamic);
  const egressDynamic = any((m) => m.egressDynamic);
  const cacheDynamic = any((m) => m.cacheDynamic);
  const routesDynamic = any((m) => m.routesDynamic);
  const packages = any((m) => m.packageImports.length > 0);
  const hosts = sortedUnique(facts.flatMap((m) => m.egressHosts));
  const hasEgress = hosts.length > 0 || egressDynamic || any((m) => m.fetchCalls > 0);
  let routes = sortRoutes(facts.flatMap((m) => m.routes));
  // A handler that never looks at the path answers every path.
  if (routes.length === 0 && !routesDynamic) routes = [{ pattern: "/", isPrefix: true }];
  const methodsProven = !any((m) => m.methodDynamic);
  const writesMethods = any((m) => m.unsafeMethods.length > 0) || !methodsProven;
  const readsBody = any((m) => m.readsBody);
  const egressWrites = any((m) => m.egressWrite);
  const readOnly = !writesMethods && !readsBody && !egressWrites;
  const stateless = !any((m) => m.writesModuleState);
  const deterministic = !any((m) => m.nondeterministic);
  const onlyIdempotentMethods =
    methodsProven && facts.every((m) => m.unsafeMethods.every((x) => x === "PUT" || x === "DELETE"));
  const idempotent = onlyIdempotentMethods && stateless && !egressWrites;
  const noSecretLeakage = !any((m) => m.secretLeak);
  const namespaces = sortedUnique(facts.flatMap((m) => m.cacheNamespaces));
  const properties: ContractProperties = {
    pure: !hasEgress && stateless && deterministic && namespaces.length === 0 && !cacheDynamic,
    readOnly,
    stateless,
    retrySafe: readOnly || idempotent,
    deterministic,
    hasEgress,
    noSecretLeakage,
    noCredentialLeakage: false,
    inputValidated: false,
    piiContained: false,
    idempotent: readOnly || idempotent,
    injectionSafe: false,
    stateIsolated: stateless,
    faultCovered: false,
    resultSafe: false,
    optionalSafe: false,
  };
  const envLiteral = sortedUnique(facts.flatMap((m) => m.envNames));
  const capabilities = sortedUnique([
    ...(envLiteral.length > 0 || envDynamic ? ["env"] : []),
    ...(hasEgress ? ["egress"] : []),
    ...(namespaces.length > 0 || cacheDynamic ? ["cache"] : []),
    ...(any((m) => m.usesClock) ? ["clock"] : []),
    ...(any((m) => m.usesRandom) ? ["random"] : []),
  ]);
  const dynamic = envDynamic || egressDynamic || cacheDynamic || routesDynamic || packages;
  if (envDynamic) notes.push("env: a name is computed, so every .env name is passed");
  if (egressDynamic) notes.push("egress: a URL reaching fetch is computed, so egress is not limited");
  if (cacheDynamic) notes.push("cache: a namespace is computed");
  if (routesDynamic) notes.push("routes: the path is matched in a way that cannot be listed");
  const contract: Contract = {
    version: 1,
    routes,
    routesDynamic,
    env: { literal: envLiteral, dynamic: envDynamic },
    egress: { hosts, dynamic: egressDynamic },
    cache: { namespaces, dynamic: cacheDynamic },
    sandbox: { capabilities },
    properties,
    proofLevel: unparsed || dynamic ? "partial" : "complete",
    provenSpecs: [],
  };
  return {
    contract,
    contractSha: contractSha(contract),
    modules: facts.map((m) => m.file),
    notes,
    behaviorPathCount: facts.reduce((n, m) => n + m.responses, 0),
    failurePathCount: facts.reduce((n, m) => n + m.failures, 0),
  };
}

/** The contract of a handler the analyser could not read at all: nothing proven. */
export function unprovenContract(): Contract {
  return {
    version: 1,
    routes: [],
    routesDynamic: true,
    env: { literal: [], dynamic: true },
    egress: { hosts: [], dynamic: true },
    cache: { namespaces: [], dynamic: true },
    sandbox: { capabilities: [] },
    properties: {
      pure: false,
      readOnly: false,
      stateless: false,
      retrySafe: false,
      deterministic: false,
      hasEgress: true,
      noSecretLeakage: false,
      noCredentialLeakage: false,
      inputValidated: false,
      piiContained: false,
      idempotent: false,
      injectionSafe: false,
      stateIsolated: false,
      faultCovered: false,
      resultSafe: false,
      optionalSafe: false,
    },
    proofLevel: "none",
    provenSpecs: [],
  };
}
