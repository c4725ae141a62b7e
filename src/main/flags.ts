import { parseArgs } from "node:util";
import { TabbifyError } from "../core/errors.js";

/**
 * One option of a role: a flag with an env twin. Flags win over env, env over the default.
 * Every option appears in the role's --help and in the README.
 */
export interface OptionSpec {
  flag: string;
  env?: string;
  default?: string;
  multiple?: boolean;
  boolean?: boolean;
  help: string;
}

export interface ParsedOptions {
  values: Record<string, string | undefined>;
  lists: Record<string, string[]>;
  flags: Record<string, boolean>;
  positionals: string[];
  help: boolean;
}

export function parseOptions(
  argv: string[],
  env: NodeJS.ProcessEnv,
  specs: OptionSpec[],
  opts: { allowPositionals?: boolean } = {},
): ParsedOptions {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {
    help: { type: "boolean" },
  };
  for (const s of specs) options[s.flag] = { type: s.boolean ? "boolean" : "string", multiple: !!s.multiple };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options,
      allowPositionals: opts.allowPositionals ?? false,
      strict: true,
    });
  } catch (err) {
    throw new TabbifyError("USAGE", (err as Error).message);
  }
  const values: Record<string, string | undefined> = {};
  const lists: Record<string, string[]> = {};
  const flags: Record<string, boolean> = {};
  for (const s of specs) {
    const raw = parsed.values[s.flag];
    const fromEnv = s.env ? env[s.env] : undefined;
    if (s.boolean) {
      flags[s.flag] =
        raw === true || (raw === undefined && fromEnv !== undefined && /^(1|true|yes)$/i.test(fromEnv));
    } else if (s.multiple) {
      const list = (raw as string[] | undefined) ?? [];
      lists[s.flag] = list.length > 0 ? list : fromEnv ? fromEnv.split(",").filter(Boolean) : [];
    } else {
      values[s.flag] = (raw as string | undefined) ?? (fromEnv === "" ? undefined : fromEnv) ?? s.default;
    }
  }
  return { values, lists, flags, positionals: parsed.positionals, help: parsed.values.help === true };
}

export function optionsHelp(usageLine: string, specs: OptionSpec[]): string {
  const rows = specs.map((s) => {
    const left = `  --${s.flag}${s.boolean ? "" : " <value>"}`;
    const right = [s.help, s.env ? `env ${s.env}` : "", s.default !== undefined ? `default ${s.default}` : ""]
      .filter(Boolean)
      .join("; ");
    return `${left.padEnd(34)} ${right}`;
  });
  return `usage: ${usageLine}\n\n${rows.join("\n")}\n`;
}

export function required(value: string | undefined, what: string): string {
  if (!value) throw new TabbifyError("USAGE", `${what} is required`);
  return value;
}

/** Parses `HOST:PORT`, `[v6]:PORT` or `:PORT`. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) throw new TabbifyError("USAGE", `--listen wants HOST:PORT, got "${value}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new TabbifyError("USAGE", `port out of range in "${value}"`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** An integer flag value of at least `min` (1 unless said otherwise); USAGE error otherwise. */
export function intOption(value: string | undefined, flag: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new TabbifyError("USAGE", `--${flag} wants an integer >= ${min}`);
  return n;
}

/** Resolves once SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
}

/**
 * `--allow-private-repos`, shared by the node (`POST /v1/deploy`) and a builder supervisor
 * (`POST /v1/build`): repo_urls on loopback, link-local or the platform's own addresses are
 * refused unless it is set. `tabbify up` sets it: its git servers and roles all live on loopback.
 */
export const allowPrivateReposOption: OptionSpec = {
  flag: "allow-private-repos",
  env: "TABBIFY_ALLOW_PRIVATE_REPOS",
  boolean: true,
  help: "clone repo_urls on loopback, link-local or the platform's own addresses (refused by default: SSRF)",
};

/** True when `--flag` (or `--flag=…`) is on the command line, not only its env twin. */
export function passedAsFlag(argv: string[], flag: string): boolean {
  return argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
}

/**
 * A Postgres URL for the node's store, checked before anything starts. One given on the command
 * line may not carry a password, which ps would show: that only comes from TABBIFY_DATABASE_URL.
 */
export function databaseOption(value: string | undefined, fromFlag: boolean): string | undefined {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TabbifyError("USAGE", "--database wants a postgres://USER@HOST:PORT/DB URL");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new TabbifyError(
      "USAGE",
      "--database wants a postgres:// URL (SQLite is the default: leave it out)",
    );
  }
  if (fromFlag && url.password !== "") {
    throw new TabbifyError(
      "USAGE",
      "--database carries a password, which ps would show: put the URL in TABBIFY_DATABASE_URL instead",
    );
  }
  return value;
}
