import { parse, TomlError } from "smol-toml";

/**
 * TOML syntax errors in the user's words. smol-toml names the parser's view ("control characters
 * are not allowed in strings" for a missing closing quote); this names the mistake and where it
 * is, as `<line>:<col>: <what>`, e.g. `2:12: unterminated string: the closing " is missing`.
 * Every TOML file a person writes (manifest.toml, tabbify.toml, tabbify.lock, --seed-apps) goes
 * through `parseTomlDocument`.
 */

export interface TomlSyntaxError {
  line: number;
  column: number;
  /** What is wrong, in the user's words (no position, no excerpt). */
  what: string;
}

/** Parses `source`; a syntax error is thrown as a TomlSyntaxError (see `isTomlSyntaxError`). */
export function parseTomlDocument(source: string): Record<string, unknown> {
  try {
    return parse(source) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) throw describeTomlError(source, err);
    throw err;
  }
}

const MARK = Symbol("toml-syntax-error");

export function isTomlSyntaxError(err: unknown): err is TomlSyntaxError {
  return typeof err === "object" && err !== null && (err as { [MARK]?: true })[MARK] === true;
}

/** `<line>:<col>: <what>`, for messages that name the file before it. */
export function formatTomlSyntaxError(err: TomlSyntaxError): string {
  return `${err.line}:${err.column}: ${err.what}`;
}

function describeTomlError(source: string, err: TomlError): TomlSyntaxError {
  const raw = err.message.split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
  const lineText = source.split(/\r?\n/)[err.line - 1] ?? "";
  const out = { line: err.line, column: err.column, what: explain(raw, lineText, err.column) };
  Object.defineProperty(out, MARK, { value: true });
  return out;
}

function explain(raw: string, lineText: string, column: number): string {
  const trimmed = lineText.trim();
  if (/control characters are not allowed in strings/.test(raw) && column > lineText.length) {
    const quote = /(["'])[^"']*$/.exec(lineText)?.[1] ?? '"';
    return `unterminated string: the closing ${quote} is missing on this line`;
  }
  if (/illegal character in key/.test(raw) && trimmed.startsWith("[") && !trimmed.includes("]")) {
    return `unterminated table header: ${trimmed} needs a closing ]`;
  }
  if (/illegal character in key/.test(raw)) {
    return `expected key = value: ${JSON.stringify(trimmed.slice(0, 60))} has no = after its key`;
  }
  if (/invalid value/.test(raw)) {
    const token =
      lineText
        .slice(Math.max(0, column - 1))
        .trim()
        .split(/[\s,\]}#]/)[0] ?? "";
    if (token === "") return "missing value: nothing follows the =";
    return `invalid value ${JSON.stringify(token.slice(0, 40))}: text needs quotes ("…"); other values are true, false, numbers, dates, [ ] or { }`;
  }
  if (/redefine an already defined table or value/.test(raw)) {
    const header = /^\[+\s*([^\]]+?)\s*\]+/.exec(trimmed)?.[1];
    const key = header ?? /^([^=]+?)\s*=/.exec(trimmed)?.[1] ?? trimmed.slice(0, 40);
    return `${header ? `table [${key}]` : key} is defined twice (or clashes with a table of that name)`;
  }
  if (/expected comma or end of structure/.test(raw)) {
    return "unclosed array or inline table: a closing ] or } (or a comma between items) is missing";
  }
  if (/must be followed by an end-of-line/.test(raw)) {
    return "unexpected text after the value: one key = value per line (a comment starts with #)";
  }
  return raw;
}
