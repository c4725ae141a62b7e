import { homedir } from "node:os";
import { type Command, Option } from "commander";
import { savedToken } from "../../cli/credentials.js";
import { NodeClient, normalizeNodeUrl } from "../../node/client.js";
import { artifactStoreOptions } from "../artifact-store-options.js";

/**
 * What every `tcli` command file shares: the node URL and token as flags and env resolve them,
 * the common flags (--node, --json, --quiet), printing, and the artifact store's flags. Only
 * src/main reads env; the command files receive plain values from here.
 */

export const DEFAULT_NODE_URL = "http://127.0.0.1:8090";
export const NODE_URL_ENVS = ["TABBIFY_CONTROL_PLANE_URL", "TABBIFY_NODE_URL"] as const;

const env = process.env;

/** Flag over env (non-empty) over default, as every Tabbify role resolves options. */
export function resolved(
  flag: string | undefined,
  envNames: readonly string[],
  fallback?: string,
): string | undefined {
  if (flag !== undefined && flag !== "") return flag;
  for (const name of envNames) {
    const v = env[name];
    if (v !== undefined && v !== "") return v;
  }
  return fallback;
}

export function nodeUrlOf(opts: { node?: string }): string {
  return normalizeNodeUrl(resolved(opts.node, NODE_URL_ENVS, DEFAULT_NODE_URL) as string);
}

export function home(): string {
  return env.HOME && env.HOME !== "" ? env.HOME : homedir();
}

/** The saved token for the node's URL, else TABBIFY_TOKEN. */
export async function clientToken(opts: { node?: string }): Promise<string | undefined> {
  return (await savedToken(home(), nodeUrlOf(opts))) ?? resolved(undefined, ["TABBIFY_TOKEN"]);
}

export async function clientFor(opts: { node?: string }): Promise<NodeClient> {
  const url = nodeUrlOf(opts);
  const token = await clientToken(opts);
  return new NodeClient({ url, ...(token ? { token } : {}) });
}

export interface CommonOpts {
  node?: string;
  json?: boolean;
  quiet?: boolean;
}

export function print<T>(opts: CommonOpts, data: T, text: (d: T) => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else if (!opts.quiet) process.stdout.write(text(data));
}

/** --node, --json and --quiet, which every command takes. */
export function withCommon(cmd: Command): Command {
  return cmd
    .option("--node <url>", `node URL (env ${NODE_URL_ENVS.join(", then ")}; default ${DEFAULT_NODE_URL})`)
    .option("--json", "print the result as JSON")
    .option("-q, --quiet", "no progress and no summary on success (errors still print)");
}

export function examples(...lines: string[]): string {
  return `\n\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;
}

export type StoreFlags = Record<string, string | boolean | undefined>;

/** The artifact store's flags (push writes the store, rm --artifacts deletes from it). */
export function addStoreOptions(cmd: Command): Command {
  for (const spec of artifactStoreOptions) {
    const extra = [spec.env ? `env ${spec.env}` : "", spec.default ? `default ${spec.default}` : ""]
      .filter(Boolean)
      .join("; ");
    cmd.addOption(new Option(`--${spec.flag} <value>`, `${spec.help}${extra ? ` (${extra})` : ""}`));
  }
  return cmd;
}

export function storeValuesOf(opts: StoreFlags): Record<string, string | undefined> {
  const values: Record<string, string | undefined> = {};
  for (const spec of artifactStoreOptions) {
    const flag = opts[spec.flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())];
    values[spec.flag] = resolved(
      typeof flag === "string" ? flag : undefined,
      spec.env ? [spec.env] : [],
      spec.default,
    );
  }
  return values;
}

/** Reads a stream to its end (stdin with a few dotenv lines; never a log or a blob). */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text;
}
