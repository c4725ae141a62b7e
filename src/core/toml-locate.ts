/**
 * Where a key is written in a TOML source, for `file:line:col` messages: smol-toml keeps no
 * positions, so the source is scanned. Follows `[table]` and `[[array]]` headers (a number in the
 * path picks the n-th entry of an array of tables, and `[a.b]` after the n-th `[[a]]` belongs to
 * it), `key = value` lines with bare or quoted keys, and dotted `table.key = value` lines before
 * the first header. A key that names a table is found at its header. Falls back to the header of
 * the key's table, then to 1:1; the message still names the key.
 */
export interface TomlKeyLocation {
  line: number;
  /** Where the key starts. */
  column: number;
  /** Where its value starts (the key's column for a table header). */
  valueColumn: number;
}

const HEADER = /^\s*(\[\[?)\s*([A-Za-z0-9_.\-"' ]+?)\s*\]\]?/;
const KEY_LINE = /^(\s*)([A-Za-z0-9_.\-"']+)(\s*=\s*)/;

const unquote = (name: string) => name.replace(/["'\s]/g, "");

export function locateTomlKey(source: string, path: readonly (string | number)[]): TomlKeyLocation {
  const at = (line: number, column: number, valueColumn = column) => ({ line, column, valueColumn });
  const key = path[path.length - 1];
  const table = path
    .slice(0, -1)
    .filter((p) => typeof p === "string")
    .join(".");
  // A path that ends in a number names an entry of an array of tables: its header.
  const index = typeof key === "number" ? key : path.slice(0, -1).find((p) => typeof p === "number");
  /** The table a string key would be if it names one. */
  const keyAsTable = typeof key === "string" ? (table === "" ? key : `${table}.${key}`) : undefined;
  const lines = source.split(/\r?\n/);
  let current = "";
  let beforeHeaders = true;
  let entry = -1;
  const arrays: Record<string, number> = {};
  let tableHeader: TomlKeyLocation | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const header = HEADER.exec(line);
    if (header) {
      beforeHeaders = false;
      current = unquote(header[2]!);
      if (header[1] === "[[") arrays[current] = (arrays[current] ?? -1) + 1;
      const owner = Object.keys(arrays).find((a) => current === a || current.startsWith(`${a}.`));
      entry = owner === undefined ? -1 : arrays[owner]!;
      const inEntry = index === undefined || entry === index;
      const column = line.indexOf("[") + 1;
      if (current === table && inEntry) {
        tableHeader ??= at(i + 1, column);
        if (typeof key !== "string") return at(i + 1, column);
      }
      if (current === keyAsTable && inEntry) return at(i + 1, column);
      continue;
    }
    if (typeof key !== "string") continue;
    const m = KEY_LINE.exec(line);
    if (!m) continue;
    const name = unquote(m[2]!);
    const found = at(i + 1, m[1]!.length + 1, m[0].length + 1);
    if (current === table && (index === undefined || entry === index) && name === key) return found;
    if (beforeHeaders && table !== "" && name === `${table}.${key}`) return found;
  }
  return tableHeader ?? at(1, 1);
}
