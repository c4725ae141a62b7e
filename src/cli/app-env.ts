import { TabbifyError } from "../core/errors.js";
import type { AppOperation, NodeClient } from "../node/client.js";
import { formatOperation, table } from "./node-output.js";

/**
 * `tcli env set|unset|list <app>`: an app's env vars and secrets on the node, per environment.
 * Values are sent once and never printed back (only `list --reveal`, with the node key, shows
 * them). A change rolls a zero-downtime restart onto the same release unless told not to.
 */

export interface EnvList {
  app: string;
  environment: string;
  vars: Array<{ name: string; updated_at: string }>;
  values?: Record<string, string>;
}

export interface EnvChange {
  app: string;
  environment: string;
  set: string[];
  unset: string[];
  restart: AppOperation | null;
}

/** `KEY=VALUE` words, or dotenv lines (`KEY=VALUE`, `# comments`, blank lines) from stdin. */
export function parseAssignments(words: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq <= 0) {
      // Never echo the word: it may be a value pasted in the wrong place.
      throw new TabbifyError(
        "USAGE",
        `expected KEY=VALUE, got something without "=" (argument ${words.indexOf(word) + 1})`,
      );
    }
    out[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return out;
}

export function parseDotenv(text: string): Record<string, string> {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.replace(/^export\s+/, ""));
  const out = parseAssignments(lines);
  for (const [k, v] of Object.entries(out)) {
    const m = /^(["'])([\s\S]*)\1$/.exec(v);
    if (m) out[k] = m[2] as string;
  }
  return out;
}

export function listEnv(
  client: NodeClient,
  ref: string,
  env: string | undefined,
  reveal: boolean,
): Promise<EnvList> {
  const query = new URLSearchParams();
  if (env) query.set("env", env);
  if (reveal) query.set("reveal", "1");
  return client.request("GET", `/api/v1/apps/${encodeURIComponent(ref)}/env?${query}`);
}

export async function changeEnv(
  client: NodeClient,
  ref: string,
  change: { env?: string; set?: Record<string, string>; unset?: string[]; restart: boolean },
): Promise<EnvChange> {
  const answer = await client.request<Omit<EnvChange, "restart">>(
    "POST",
    `/api/v1/apps/${encodeURIComponent(ref)}/env`,
    {
      ...(change.env ? { env: change.env } : {}),
      set: change.set ?? {},
      unset: change.unset ?? [],
    },
  );
  // The restart reaches the workloads of the environment whose values changed, and only those.
  const restart = change.restart ? await client.operate(ref, "restart", change.env) : null;
  return { ...answer, restart };
}

export function formatEnvList(r: EnvList): string {
  if (r.vars.length === 0) return `${r.app} (${r.environment}): no env vars set\n`;
  return `${r.app} (${r.environment})\n${table(
    r.values ? ["NAME", "VALUE", "UPDATED"] : ["NAME", "UPDATED"],
    r.vars.map((v) => (r.values ? [v.name, r.values[v.name] ?? "", v.updated_at] : [v.name, v.updated_at])),
  )}`;
}

export function formatEnvChange(r: EnvChange): string {
  const lines = [...r.set.map((n) => `set ${n}`), ...r.unset.map((n) => `unset ${n}`)];
  let text = `${r.app} (${r.environment}): ${lines.length === 0 ? "nothing changed" : lines.join(", ")}\n`;
  if (!r.restart) text += "not restarted (--no-restart): the new env applies at the next start or deploy\n";
  else if (r.restart.targets.length === 0)
    text += "the app runs nowhere yet: the new env applies when it starts\n";
  else {
    text += formatOperation(r.restart);
    if (r.restart.targets.some((t) => t.status === 409))
      text += "a stopped target gets the new env when it starts\n";
  }
  return text;
}
