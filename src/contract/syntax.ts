import ts from "typescript";

/**
 * Syntax helpers for the module walk (analyse-module.ts): unwrapping expressions, reading
 * literals and `process.env`, finding enclosing functions, and recognising responses, request
 * bodies, mutations and nondeterminism.
 */
const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|_KEY$|^KEY$|AUTH/i;
export const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
export const MUTATORS = new Set([
  "push",
  "pop",
  "shift",
  "unshift",
  "splice",
  "sort",
  "reverse",
  "fill",
  "set",
  "add",
  "delete",
  "clear",
]);
export const BODY_READERS = new Set(["json", "text", "formData", "arrayBuffer", "blob", "bytes"]);

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

export function unwrap(e: ts.Expression): ts.Expression {
  let x = e;
  while (
    ts.isParenthesizedExpression(x) ||
    ts.isAsExpression(x) ||
    ts.isNonNullExpression(x) ||
    ts.isAwaitExpression(x) ||
    ts.isSatisfiesExpression(x) ||
    ts.isTypeAssertionExpression(x)
  ) {
    x = x.expression;
  }
  return x;
}

export function literalText(e: ts.Expression | undefined): string | undefined {
  if (!e) return undefined;
  const x = unwrap(e);
  if (ts.isStringLiteral(x) || ts.isNoSubstitutionTemplateLiteral(x)) return x.text;
  return undefined;
}

export function isProcessEnv(e: ts.Node): e is ts.PropertyAccessExpression {
  return (
    ts.isPropertyAccessExpression(e) &&
    e.name.text === "env" &&
    ts.isIdentifier(e.expression) &&
    e.expression.text === "process"
  );
}

export function isFunctionLike(n: ts.Node): boolean {
  return (
    ts.isFunctionDeclaration(n) ||
    ts.isFunctionExpression(n) ||
    ts.isArrowFunction(n) ||
    ts.isMethodDeclaration(n) ||
    ts.isGetAccessor(n) ||
    ts.isSetAccessor(n) ||
    ts.isConstructorDeclaration(n)
  );
}

export function insideFunction(n: ts.Node): boolean {
  for (let p = n.parent; p; p = p.parent) if (isFunctionLike(p)) return true;
  return false;
}

export function enclosingFunction(n: ts.Node): ts.Node | undefined {
  for (let p = n.parent; p; p = p.parent) if (isFunctionLike(p)) return p;
  return undefined;
}

/** The host of an absolute http(s) URL prefix, when the prefix fixes the host. */
export function hostOfPrefix(prefix: string, complete: boolean): string | undefined {
  const m = /^(https?):\/\/([^/?#]*)([/?#].*)?$/s.exec(prefix);
  if (!m) return undefined;
  if (!complete && m[3] === undefined) return undefined; // the host may go on in the substitution
  try {
    return new URL(`${m[1]}://${m[2]}/`).host;
  } catch {
    return undefined;
  }
}

export type UrlValue = { host: string } | { dynamic: true };

export function isExpressionUse(id: ts.Identifier): boolean {
  const p = id.parent;
  if (!p) return false;
  if (ts.isVariableDeclaration(p) && p.name === id) return false;
  if (ts.isBindingElement(p)) return false;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if (ts.isPropertyAssignment(p) && p.name === id) return false;
  if (ts.isParameter(p)) return false;
  return true;
}

/** Calls whose result carries their argument's value (string forming), so taint flows through. */
export function passesValueThrough(call: ts.CallExpression): boolean {
  const callee = call.expression;
  if (ts.isIdentifier(callee))
    return ["String", "encodeURIComponent", "encodeURI", "btoa"].includes(callee.text);
  if (ts.isPropertyAccessExpression(callee)) {
    const obj = callee.expression;
    if (ts.isIdentifier(obj) && obj.text === "JSON" && callee.name.text === "stringify") return true;
    if (ts.isIdentifier(obj) && obj.text === "Buffer" && callee.name.text === "from") return true;
    return false;
  }
  return false;
}

export function isAssignment(kind: ts.SyntaxKind): boolean {
  return kind >= ts.SyntaxKind.FirstAssignment && kind <= ts.SyntaxKind.LastAssignment;
}

export function nondeterminism(n: ts.Node): "clock" | "random" | undefined {
  if (ts.isNewExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "Date") {
    return (n.arguments?.length ?? 0) === 0 ? "clock" : undefined;
  }
  if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "Date") return "clock";
  if (ts.isPropertyAccessExpression(n) && ts.isIdentifier(n.expression)) {
    const obj = n.expression.text;
    const prop = n.name.text;
    if (obj === "Date" && prop === "now") return "clock";
    if (obj === "performance" && prop === "now") return "clock";
    if (obj === "Math" && prop === "random") return "random";
    if (obj === "crypto" && /^(random|getRandomValues)/.test(prop)) return "random";
  }
  return undefined;
}

export function isResponseConstruction(n: ts.Node): n is ts.NewExpression | ts.CallExpression {
  if (ts.isNewExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "Response") return true;
  return (
    ts.isCallExpression(n) &&
    ts.isPropertyAccessExpression(n.expression) &&
    ts.isIdentifier(n.expression.expression) &&
    n.expression.expression.text === "Response" &&
    ["json", "redirect", "error"].includes(n.expression.name.text)
  );
}

/** The body argument of `new Response(body)` / `Response.json(body)`. */
export function responseBody(n: ts.Node): ts.Expression | undefined {
  if (!isResponseConstruction(n)) return undefined;
  if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
    return n.expression.name.text === "json" ? n.arguments[0] : undefined;
  }
  return n.arguments?.[0];
}

export function isFailureResponse(n: ts.NewExpression | ts.CallExpression): boolean {
  if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
    if (n.expression.name.text === "error") return true;
  }
  const init = n.arguments?.[1];
  if (!init || !ts.isObjectLiteralExpression(init)) return false;
  for (const p of init.properties) {
    if (ts.isPropertyAssignment(p) && ts.isIdentifier(p.name) && p.name.text === "status") {
      return ts.isNumericLiteral(p.initializer) && Number(p.initializer.text) >= 400;
    }
  }
  return false;
}
