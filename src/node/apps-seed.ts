import { TabbifyError } from "../core/errors.js";
import { formatTomlSyntaxError, isTomlSyntaxError, parseTomlDocument } from "../core/toml-errors.js";

/**
 * A `--seed-apps` file: JSON `{"apps": [app, …]}` or TOML with `[[apps]]` tables (by the file's
 * extension: `.toml` is TOML, anything else JSON). Only the list is read here; each app is
 * validated like a PUT body when the seed is applied.
 */
export function parseSeedApps(text: string, fileName: string): unknown[] {
  let doc: unknown;
  const toml = fileName.toLowerCase().endsWith(".toml");
  try {
    doc = toml ? parseTomlDocument(text) : JSON.parse(text);
  } catch (err) {
    const why = isTomlSyntaxError(err)
      ? formatTomlSyntaxError(err)
      : err instanceof Error
        ? err.message.split("\n")[0]
        : String(err);
    throw new TabbifyError("USAGE", `--seed-apps ${fileName} is not valid ${toml ? "TOML" : "JSON"}: ${why}`);
  }
  const apps = (doc as { apps?: unknown } | null)?.apps;
  if (typeof doc !== "object" || doc === null || !Array.isArray(apps)) {
    throw new TabbifyError(
      "USAGE",
      `--seed-apps ${fileName} must hold ${toml ? "[[apps]] tables" : '{"apps": [ … ]}'} (a list of apps)`,
    );
  }
  const extra = Object.keys(doc).filter((k) => k !== "apps");
  if (extra.length > 0)
    throw new TabbifyError("USAGE", `--seed-apps ${fileName}: unknown top-level key "${extra[0]}"`);
  // Plain JSON values, whichever syntax they came in (TOML tables have null prototypes).
  return JSON.parse(JSON.stringify(apps)) as unknown[];
}
