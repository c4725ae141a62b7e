import ts from "typescript";
import {
  BODY_READERS,
  enclosingFunction,
  hostOfPrefix,
  insideFunction,
  isAssignment,
  isExpressionUse,
  isFailureResponse,
  isFunctionLike,
  isProcessEnv,
  isResponseConstruction,
  isSecretName,
  literalText,
  MUTATORS,
  nondeterminism,
  passesValueThrough,
  responseBody,
  SAFE_METHODS,
  type UrlValue,
  unwrap,
} from "./syntax.js";
import type { Route } from "./types.js";

/**
 * One module's facts, from one walk of its syntax tree. The recognised forms are the README's
 * "Deploy a handler" list; anything else that touches a fact makes that fact dynamic.
 */
export interface ModuleFacts {
  file: string;
  exportsHandler: boolean;
  localImports: string[];
  packageImports: string[];
  envNames: string[];
  envDynamic: boolean;
  egressHosts: string[];
  egressDynamic: boolean;
  fetchCalls: number;
  /** A fetch with a method other than GET/HEAD (or one not written literally). */
  egressWrite: boolean;
  cacheNamespaces: string[];
  cacheDynamic: boolean;
  routes: Route[];
  routesDynamic: boolean;
  /** Methods the handler branches on other than GET, HEAD and OPTIONS. */
  unsafeMethods: string[];
  methodDynamic: boolean;
  readsBody: boolean;
  writesModuleState: boolean;
  nondeterministic: boolean;
  usesClock: boolean;
  usesRandom: boolean;
  secretLeak: boolean;
  responses: number;
  failures: number;
}

/** The module handlers import the cache API from (served by the handler wrapper). */
export const CACHE_MODULE = "tabbify:cache";

export function moduleFacts(sf: ts.SourceFile, opts: { isHandler: boolean }): ModuleFacts {
  const f: ModuleFacts = {
    file: sf.fileName,
    exportsHandler: false,
    localImports: [],
    packageImports: [],
    envNames: [],
    envDynamic: false,
    egressHosts: [],
    egressDynamic: false,
    fetchCalls: 0,
    egressWrite: false,
    cacheNamespaces: [],
    cacheDynamic: false,
    routes: [],
    routesDynamic: false,
    unsafeMethods: [],
    methodDynamic: false,
    readsBody: false,
    writesModuleState: false,
    nondeterministic: false,
    usesClock: false,
    usesRandom: false,
    secretLeak: false,
    responses: 0,
    failures: 0,
  };

  // Declarations by name: a name declared once with `const` can be resolved to its initializer.
  const decls = new Map<string, ts.VariableDeclaration[]>();
  const moduleMutable = new Set<string>();
  const cacheFns = new Set<string>();
  const cacheNamespacesObj = new Set<string>();
  const visitDecls = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name)) {
      const list = decls.get(n.name.text) ?? [];
      list.push(n);
      decls.set(n.name.text, list);
    }
    ts.forEachChild(n, visitDecls);
  };
  visitDecls(sf);
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st)) continue;
    const isConst = (st.declarationList.flags & ts.NodeFlags.Const) !== 0;
    for (const d of st.declarationList.declarations) {
      if (!ts.isIdentifier(d.name)) continue;
      const init = d.initializer ? unwrap(d.initializer) : undefined;
      const objectLike =
        init !== undefined &&
        (ts.isObjectLiteralExpression(init) || ts.isArrayLiteralExpression(init) || ts.isNewExpression(init));
      if (!isConst || objectLike) moduleMutable.add(d.name.text);
    }
  }

  const constInit = (name: string): ts.Expression | undefined => {
    const list = decls.get(name);
    const d = list?.length === 1 ? list[0] : undefined;
    if (!d) return undefined;
    const flags = (d.parent as ts.VariableDeclarationList).flags;
    if ((flags & ts.NodeFlags.Const) === 0) return undefined;
    return d.initializer;
  };

  const evalUrl = (e: ts.Expression | undefined, depth = 0): UrlValue => {
    if (!e || depth > 6) return { dynamic: true };
    const x = unwrap(e);
    const lit = literalText(x);
    if (lit !== undefined) {
      const host = hostOfPrefix(lit, true);
      return host ? { host } : { dynamic: true };
    }
    if (ts.isTemplateExpression(x)) {
      const host = hostOfPrefix(x.head.text, false);
      return host ? { host } : { dynamic: true };
    }
    if (ts.isBinaryExpression(x) && x.operatorToken.kind === ts.SyntaxKind.PlusToken) {
      const left = literalText(x.left);
      if (left !== undefined) {
        const host = hostOfPrefix(left, false);
        return host ? { host } : { dynamic: true };
      }
      return evalUrl(x.left, depth + 1);
    }
    if (ts.isIdentifier(x)) return evalUrl(constInit(x.text), depth + 1);
    if (ts.isNewExpression(x) && ts.isIdentifier(x.expression)) {
      const args = x.arguments ?? [];
      if (x.expression.text === "URL") {
        const first = literalText(args[0]);
        if (first !== undefined && hostOfPrefix(first, true)) return evalUrl(args[0], depth + 1);
        if (args.length >= 2) return evalUrl(args[1], depth + 1);
        return evalUrl(args[0], depth + 1);
      }
      if (x.expression.text === "Request") return evalUrl(args[0], depth + 1);
    }
    if (ts.isPropertyAccessExpression(x) && (x.name.text === "href" || x.name.text === "origin")) {
      return evalUrl(x.expression, depth + 1);
    }
    if (
      ts.isCallExpression(x) &&
      ts.isPropertyAccessExpression(x.expression) &&
      x.expression.name.text === "toString"
    ) {
      return evalUrl(x.expression.expression, depth + 1);
    }
    return { dynamic: true };
  };

  // Identifiers holding the request path, and the method.
  const pathVars = new Set<string>();
  const methodVars = new Set<string>();
  const collectAliases = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) && n.initializer) {
      const init = unwrap(n.initializer);
      if (ts.isIdentifier(n.name) && ts.isPropertyAccessExpression(init)) {
        if (init.name.text === "pathname") pathVars.add(n.name.text);
        if (init.name.text === "method") methodVars.add(n.name.text);
      }
      if (ts.isObjectBindingPattern(n.name) && !isProcessEnv(init)) {
        for (const el of n.name.elements) {
          const prop = el.propertyName && ts.isIdentifier(el.propertyName) ? el.propertyName.text : undefined;
          const local = ts.isIdentifier(el.name) ? el.name.text : undefined;
          if (!local) continue;
          if ((prop ?? local) === "pathname") pathVars.add(local);
          if ((prop ?? local) === "method") methodVars.add(local);
        }
      }
    }
    ts.forEachChild(n, collectAliases);
  };
  collectAliases(sf);

  const isPathExpr = (e: ts.Node): boolean => {
    const x = ts.isExpression(e) ? unwrap(e) : e;
    if (ts.isPropertyAccessExpression(x) && x.name.text === "pathname") return true;
    return ts.isIdentifier(x) && pathVars.has(x.text);
  };
  const isMethodExpr = (e: ts.Node): boolean => {
    const x = ts.isExpression(e) ? unwrap(e) : e;
    if (ts.isPropertyAccessExpression(x) && x.name.text === "method") return true;
    return ts.isIdentifier(x) && methodVars.has(x.text);
  };

  const addMethod = (m: string | undefined): void => {
    if (m === undefined) f.methodDynamic = true;
    else if (!SAFE_METHODS.has(m.toUpperCase())) f.unsafeMethods.push(m.toUpperCase());
  };

  const routeTableKeys = (table: ts.Expression): string[] | undefined => {
    let x = unwrap(table);
    if (ts.isIdentifier(x)) {
      const init = constInit(x.text);
      if (!init) return undefined;
      x = unwrap(init);
    }
    if (!ts.isObjectLiteralExpression(x)) return undefined;
    const keys: string[] = [];
    for (const p of x.properties) {
      if (!(ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isShorthandPropertyAssignment(p)))
        return undefined;
      const name = p.name;
      if (ts.isStringLiteral(name) || ts.isIdentifier(name) || ts.isNoSubstitutionTemplateLiteral(name))
        keys.push(name.text);
      else return undefined;
    }
    return keys;
  };

  /** What a use of the path (or method) compares it with. */
  const onPathUse = (node: ts.Expression): void => {
    let use: ts.Node = node;
    while (
      use.parent &&
      (ts.isParenthesizedExpression(use.parent) ||
        ts.isNonNullExpression(use.parent) ||
        ts.isAsExpression(use.parent) ||
        ts.isSatisfiesExpression(use.parent))
    )
      use = use.parent;
    const p = use.parent;
    if (!p) return;
    if (ts.isVariableDeclaration(p) || ts.isShorthandPropertyAssignment(p)) return;
    if (ts.isBinaryExpression(p)) {
      const k = p.operatorToken.kind;
      if (
        k === ts.SyntaxKind.EqualsEqualsEqualsToken ||
        k === ts.SyntaxKind.EqualsEqualsToken ||
        k === ts.SyntaxKind.ExclamationEqualsEqualsToken ||
        k === ts.SyntaxKind.ExclamationEqualsToken
      ) {
        const other = p.left === use ? p.right : p.left;
        const lit = literalText(other);
        if (lit !== undefined) f.routes.push({ pattern: lit, isPrefix: false });
        else f.routesDynamic = true;
        return;
      }
      if (k === ts.SyntaxKind.PlusToken) return; // building a string (a log line, a body)
      f.routesDynamic = true;
      return;
    }
    if (ts.isTemplateSpan(p)) return;
    if (ts.isSwitchStatement(p)) {
      for (const clause of p.caseBlock.clauses) {
        if (!ts.isCaseClause(clause)) continue;
        const lit = literalText(clause.expression);
        if (lit !== undefined) f.routes.push({ pattern: lit, isPrefix: false });
        else f.routesDynamic = true;
      }
      return;
    }
    if (ts.isPropertyAccessExpression(p) && p.expression === use && ts.isCallExpression(p.parent)) {
      const lit = literalText(p.parent.arguments[0]);
      if (p.name.text === "startsWith" && lit !== undefined) {
        f.routes.push({ pattern: lit, isPrefix: true });
        return;
      }
      f.routesDynamic = true;
      return;
    }
    if (ts.isElementAccessExpression(p) && p.argumentExpression === use) {
      const keys = routeTableKeys(p.expression);
      if (keys) for (const k of keys) f.routes.push({ pattern: k, isPrefix: false });
      else f.routesDynamic = true;
      return;
    }
    if (ts.isCallExpression(p)) {
      const callee = p.expression;
      const isConsole =
        ts.isPropertyAccessExpression(callee) &&
        ts.isIdentifier(callee.expression) &&
        callee.expression.text === "console";
      if (!isConsole) f.routesDynamic = true;
      return;
    }
    if (ts.isReturnStatement(p) || ts.isPropertyAssignment(p) || ts.isArrayLiteralExpression(p)) return;
    if (ts.isNewExpression(p)) return;
    f.routesDynamic = true;
  };

  const onMethodUse = (node: ts.Expression): void => {
    let use: ts.Node = node;
    while (use.parent && ts.isParenthesizedExpression(use.parent)) use = use.parent;
    const p = use.parent;
    if (!p) return;
    if (ts.isVariableDeclaration(p)) return;
    if (ts.isBinaryExpression(p)) {
      const k = p.operatorToken.kind;
      if (
        k === ts.SyntaxKind.EqualsEqualsEqualsToken ||
        k === ts.SyntaxKind.EqualsEqualsToken ||
        k === ts.SyntaxKind.ExclamationEqualsEqualsToken ||
        k === ts.SyntaxKind.ExclamationEqualsToken
      ) {
        addMethod(literalText(p.left === use ? p.right : p.left));
        return;
      }
      if (k === ts.SyntaxKind.PlusToken) return;
      f.methodDynamic = true;
      return;
    }
    if (ts.isTemplateSpan(p)) return;
    if (ts.isSwitchStatement(p)) {
      for (const clause of p.caseBlock.clauses)
        if (ts.isCaseClause(clause)) addMethod(literalText(clause.expression));
      return;
    }
    if (
      ts.isCallExpression(p) &&
      ts.isPropertyAccessExpression(p.expression) &&
      p.expression.name.text === "includes" &&
      ts.isArrayLiteralExpression(unwrap(p.expression.expression))
    ) {
      for (const el of (unwrap(p.expression.expression) as ts.ArrayLiteralExpression).elements)
        addMethod(literalText(el as ts.Expression));
      return;
    }
    if (ts.isCallExpression(p)) {
      const callee = p.expression;
      if (
        ts.isPropertyAccessExpression(callee) &&
        ts.isIdentifier(callee.expression) &&
        callee.expression.text === "console"
      )
        return;
    }
    if (ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p)) return;
    f.methodDynamic = true;
  };

  const isParameterName = (id: ts.Identifier): boolean => {
    for (let p: ts.Node | undefined = id.parent; p; p = p.parent) {
      if (isFunctionLike(p)) {
        const fn = p as ts.SignatureDeclaration;
        if (fn.parameters.some((prm) => ts.isIdentifier(prm.name) && prm.name.text === id.text)) return true;
      }
    }
    return false;
  };

  const rootIdentifier = (e: ts.Expression): ts.Identifier | undefined => {
    let x: ts.Expression = unwrap(e);
    for (;;) {
      if (ts.isPropertyAccessExpression(x) || ts.isElementAccessExpression(x)) x = unwrap(x.expression);
      else if (ts.isCallExpression(x)) x = unwrap(x.expression);
      else break;
    }
    return ts.isIdentifier(x) ? x : undefined;
  };

  const envNameOf = (n: ts.Node): string | "dynamic" | undefined => {
    if (ts.isPropertyAccessExpression(n) && isProcessEnv(n.expression)) return n.name.text;
    if (ts.isElementAccessExpression(n) && isProcessEnv(n.expression)) {
      return literalText(n.argumentExpression) ?? "dynamic";
    }
    return undefined;
  };

  /** True when the expression carries a secret-looking env value (directly or through a tainted name). */
  const carriesSecret = (e: ts.Node, tainted: Set<string>): boolean => {
    let found = false;
    const walk = (n: ts.Node): void => {
      if (found) return;
      const name = envNameOf(n);
      if (name !== undefined && (name === "dynamic" || isSecretName(name))) {
        found = true;
        return;
      }
      if (isProcessEnv(n) && !envNameOf(n.parent)) {
        found = true;
        return;
      }
      if (ts.isIdentifier(n) && tainted.has(n.text)) {
        found = true;
        return;
      }
      if (isFunctionLike(n)) return;
      if (ts.isCallExpression(n) && !passesValueThrough(n)) {
        // A call's result is not its argument (fetch(url, {headers: secret}) returns a response).
        walk(n.expression);
        return;
      }
      ts.forEachChild(n, walk);
    };
    walk(e);
    return found;
  };

  const checkLeaks = (fn: ts.Node): void => {
    const tainted = new Set<string>();
    const walk = (n: ts.Node): void => {
      if (n !== fn && isFunctionLike(n)) {
        checkLeaks(n);
        return;
      }
      if (ts.isVariableDeclaration(n) && n.initializer && carriesSecret(n.initializer, tainted)) {
        if (ts.isIdentifier(n.name)) tainted.add(n.name.text);
        else if (ts.isObjectBindingPattern(n.name)) {
          for (const el of n.name.elements) if (ts.isIdentifier(el.name)) tainted.add(el.name.text);
        }
      }
      if (
        ts.isBinaryExpression(n) &&
        n.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
        ts.isIdentifier(n.left) &&
        carriesSecret(n.right, tainted)
      ) {
        tainted.add(n.left.text);
      }
      const sink = responseBody(n);
      if (sink && carriesSecret(sink, tainted)) f.secretLeak = true;
      ts.forEachChild(n, walk);
    };
    ts.forEachChild(fn, walk);
  };

  const visit = (n: ts.Node): void => {
    // Imports and exports.
    if (ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) {
      const spec = n.moduleSpecifier && literalText(n.moduleSpecifier as ts.Expression);
      const typeOnly = ts.isImportDeclaration(n) ? n.importClause?.isTypeOnly === true : n.isTypeOnly;
      if (spec !== undefined && !typeOnly) noteImport(spec);
      if (ts.isImportDeclaration(n) && spec === CACHE_MODULE) {
        const bindings = n.importClause?.namedBindings;
        if (bindings && ts.isNamedImports(bindings)) {
          for (const el of bindings.elements) {
            if ((el.propertyName?.text ?? el.name.text) === "cache") cacheFns.add(el.name.text);
          }
        } else if (bindings && ts.isNamespaceImport(bindings)) cacheNamespacesObj.add(bindings.name.text);
      }
      if (ts.isExportDeclaration(n) && n.exportClause && ts.isNamedExports(n.exportClause)) {
        for (const el of n.exportClause.elements) {
          if (el.name.text === "handler" || el.name.text === "default") f.exportsHandler = true;
        }
      }
    }
    if (ts.isExportAssignment(n) && !n.isExportEquals) f.exportsHandler = true;
    if (
      (ts.isFunctionDeclaration(n) || ts.isVariableStatement(n)) &&
      n.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    ) {
      if (n.modifiers.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) f.exportsHandler = true;
      if (ts.isFunctionDeclaration(n) && n.name?.text === "handler") f.exportsHandler = true;
      if (
        ts.isVariableStatement(n) &&
        n.declarationList.declarations.some((d) => ts.isIdentifier(d.name) && d.name.text === "handler")
      )
        f.exportsHandler = true;
    }
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const spec = literalText(n.arguments[0]);
      if (spec !== undefined) noteImport(spec);
      else f.packageImports.push("(computed import)");
    }
    if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "require") {
      const spec = literalText(n.arguments[0]);
      if (spec !== undefined) noteImport(spec);
      else f.packageImports.push("(computed require)");
    }

    // env
    const env = envNameOf(n);
    if (env === "dynamic") f.envDynamic = true;
    else if (env !== undefined) f.envNames.push(env);
    if (isProcessEnv(n) && envNameOf(n.parent) === undefined) {
      const p = n.parent;
      if (ts.isVariableDeclaration(p) && ts.isObjectBindingPattern(p.name)) {
        for (const el of p.name.elements) {
          if (el.dotDotDotToken) f.envDynamic = true;
          else if (
            el.propertyName &&
            !ts.isIdentifier(el.propertyName) &&
            !ts.isStringLiteral(el.propertyName)
          )
            f.envDynamic = true;
          else if (el.propertyName)
            f.envNames.push((el.propertyName as ts.Identifier | ts.StringLiteral).text);
          else if (ts.isIdentifier(el.name)) f.envNames.push(el.name.text);
        }
      } else f.envDynamic = true;
    }

    // egress
    if (ts.isCallExpression(n)) {
      const callee = unwrap(n.expression);
      const isFetch =
        (ts.isIdentifier(callee) && callee.text === "fetch") ||
        (ts.isPropertyAccessExpression(callee) &&
          callee.name.text === "fetch" &&
          ts.isIdentifier(callee.expression) &&
          (callee.expression.text === "globalThis" || callee.expression.text === "window"));
      if (isFetch) {
        f.fetchCalls++;
        const target = evalUrl(n.arguments[0]);
        if ("host" in target) f.egressHosts.push(target.host);
        else f.egressDynamic = true;
        const init = n.arguments[1] ? unwrap(n.arguments[1]) : undefined;
        if (init) {
          if (ts.isObjectLiteralExpression(init)) {
            for (const p of init.properties) {
              if (p.name && ts.isIdentifier(p.name) && p.name.text === "method") {
                const m = ts.isPropertyAssignment(p) ? literalText(p.initializer) : undefined;
                if (m === undefined || !SAFE_METHODS.has(m.toUpperCase())) f.egressWrite = true;
              }
              if (ts.isSpreadAssignment(p)) f.egressWrite = true;
            }
          } else f.egressWrite = true;
        }
      }
      // cache
      const isCacheCall =
        (ts.isIdentifier(callee) && cacheFns.has(callee.text)) ||
        (ts.isPropertyAccessExpression(callee) &&
          callee.name.text === "cache" &&
          ts.isIdentifier(callee.expression) &&
          cacheNamespacesObj.has(callee.expression.text));
      if (isCacheCall) {
        const ns = literalText(n.arguments[0]);
        if (ns !== undefined) f.cacheNamespaces.push(ns);
        else f.cacheDynamic = true;
      }
      // body reads on the request (a parameter), not on a fetch response (a variable)
      if (ts.isPropertyAccessExpression(callee) && BODY_READERS.has(callee.name.text)) {
        const root = rootIdentifier(callee.expression);
        if (root && isParameterName(root)) f.readsBody = true;
      }
      // module state mutated through a method
      if (
        ts.isPropertyAccessExpression(callee) &&
        MUTATORS.has(callee.name.text) &&
        insideFunction(n) &&
        ts.isIdentifier(unwrap(callee.expression)) &&
        moduleMutable.has((unwrap(callee.expression) as ts.Identifier).text)
      ) {
        f.writesModuleState = true;
      }
    }
    if (ts.isPropertyAccessExpression(n) && n.name.text === "body" && ts.isIdentifier(n.expression)) {
      if (isParameterName(n.expression)) f.readsBody = true;
    }
    // routes and methods
    if (
      (ts.isPropertyAccessExpression(n) && n.name.text === "pathname") ||
      (ts.isIdentifier(n) && pathVars.has(n.text) && isExpressionUse(n))
    ) {
      if (isPathExpr(n)) onPathUse(n as ts.Expression);
    }
    if (
      (ts.isPropertyAccessExpression(n) && n.name.text === "method") ||
      (ts.isIdentifier(n) && methodVars.has(n.text) && isExpressionUse(n))
    ) {
      if (isMethodExpr(n)) onMethodUse(n as ts.Expression);
    }
    // module state written
    if (insideFunction(n)) {
      if (ts.isBinaryExpression(n) && isAssignment(n.operatorToken.kind)) {
        const target = rootIdentifier(n.left as ts.Expression);
        if (target && moduleMutable.has(target.text)) f.writesModuleState = true;
      }
      if (
        (ts.isPrefixUnaryExpression(n) || ts.isPostfixUnaryExpression(n)) &&
        (n.operator === ts.SyntaxKind.PlusPlusToken || n.operator === ts.SyntaxKind.MinusMinusToken)
      ) {
        const target = rootIdentifier(n.operand);
        if (target && moduleMutable.has(target.text)) f.writesModuleState = true;
      }
      if (ts.isDeleteExpression(n)) {
        const target = rootIdentifier(n.expression);
        if (target && moduleMutable.has(target.text)) f.writesModuleState = true;
      }
    }
    // clock and randomness
    const clockOrRandom = nondeterminism(n);
    if (clockOrRandom) {
      if (clockOrRandom === "clock") f.usesClock = true;
      else f.usesRandom = true;
      if (insideFunction(n)) f.nondeterministic = true;
    }
    // responses
    if (isResponseConstruction(n)) {
      f.responses++;
      if (isFailureResponse(n)) f.failures++;
    }
    if (ts.isThrowStatement(n) && insideFunction(n)) f.failures++;
    if (isFunctionLike(n) && !enclosingFunction(n)) checkLeaks(n);
    ts.forEachChild(n, visit);
  };

  const noteImport = (spec: string): void => {
    if (spec === CACHE_MODULE) return;
    if (spec.startsWith("./") || spec.startsWith("../")) f.localImports.push(spec);
    else f.packageImports.push(spec);
  };

  visit(sf);
  if (!opts.isHandler) f.exportsHandler = f.exportsHandler || false;
  return f;
}
