import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { parseSince } from "../core/since.js";
import type {
  AppOperation,
  DeployProgress,
  NodeApp,
  NodeClient,
  NodeRunner,
  RuntimeStatus,
} from "../node/client.js";
import { forgetToken, saveToken } from "./credentials.js";

/**
 * The handlers of tcli's node commands. Each takes a NodeClient (and plain values) and returns
 * data; src/main/tcli.ts prints it (text or `--json`). None of them prints or reads env.
 */

export interface LoginResult {
  node: string;
  saved_to: string;
  /** How many apps the token sees: proof it works. */
  apps_visible: number;
}

/** Checks `token` against the node (it must list apps), then saves it for that node. */
export async function login(client: NodeClient, token: string, home: string): Promise<LoginResult> {
  if (token === "")
    throw new TabbifyError("USAGE", "the token is empty: pass the node key or a tenant token");
  if (/\s/.test(token)) throw new TabbifyError("USAGE", "a token has no spaces or line breaks inside");
  let apps: NodeApp[];
  try {
    apps = await client.apps();
  } catch (err) {
    if (isTabbifyError(err, "UNAUTHORIZED")) {
      throw new TabbifyError(
        "LOGIN_REFUSED",
        `the node at ${client.url} refused this token; nothing was saved. Use the node key (TABBIFY_NODE_KEY) or a tenant token from \`tabbify auth token\``,
      );
    }
    throw err;
  }
  const savedTo = await saveToken(home, client.url, token);
  return { node: client.url, saved_to: savedTo, apps_visible: apps.length };
}

export async function logout(nodeUrl: string, home: string): Promise<{ node: string; forgotten: boolean }> {
  return { node: nodeUrl, forgotten: await forgetToken(home, nodeUrl) };
}

export interface AppRow {
  name: string;
  uuid: string;
  tenant: string;
  environments: string[];
  /** `running` when a runner of it is on the roster; `unknown` when the caller may not see the roster. */
  state: "running" | "not running" | "unknown";
  version: string | null;
  supervisor: string | null;
  url: string;
}

/** `tcli apps`: the registry's apps the caller may see, with what the roster says of them. */
export async function listApps(client: NodeClient): Promise<AppRow[]> {
  const apps = await client.apps();
  let runners: NodeRunner[] | undefined;
  try {
    runners = await client.runners();
  } catch (err) {
    // The roster is the node key's; a tenant token sees the registry only.
    if (!isTabbifyError(err, "UNAUTHORIZED") && !isTabbifyError(err, "FORBIDDEN")) throw err;
  }
  return apps.map((app) => {
    const runner = runners?.find((r) => r.uuid === app.uuid);
    return {
      name: app.name,
      uuid: app.uuid,
      tenant: app.tenant,
      environments: app.environments,
      state: runners === undefined ? "unknown" : runner ? "running" : "not running",
      version: runner?.version ?? null,
      supervisor: runner?.supervisor ?? null,
      url: `${client.url}/app/${app.uuid}/`,
    };
  });
}

export interface AppStatus {
  app: NodeApp;
  url: string;
  targets: RuntimeStatus["targets"];
  last_deploy: DeployProgress["deploy"] | null;
}

/** `tcli status <app>`: the registry entry, each target's state and the last deploy. */
export async function appStatus(client: NodeClient, ref: string): Promise<AppStatus> {
  const app = await client.app(ref);
  const runtime = await client.runtimeStatus(app.uuid);
  let lastDeploy: DeployProgress["deploy"] | null = null;
  try {
    lastDeploy = (await client.progress(app.uuid)).deploy;
  } catch (err) {
    if (!isTabbifyError(err, "DEPLOY_NOT_FOUND")) throw err;
  }
  return { app, url: `${client.url}/app/${app.uuid}/`, targets: runtime.targets, last_deploy: lastDeploy };
}

/** The next step to print under an error, by its code. */
export function nextStepFor(code: string, command: string, nodeUrl: string | undefined): string | undefined {
  switch (code) {
    case "UNAUTHORIZED":
      return `log in first: tcli login --node ${nodeUrl ?? "URL"}`;
    case "NODE_KEY_NOT_SET":
      return "start the node with TABBIFY_NODE_KEY set (tabbify up sets one)";
    case "APP_NOT_FOUND":
      return "tcli apps lists the apps you may see";
    case "NODE_UNREACHABLE":
      return "is the node running? start it with `tabbify up`, or point tcli at it with --node URL (or TABBIFY_CONTROL_PLANE_URL)";
    case "FORBIDDEN":
      return "this needs the node key: tcli login --node URL with TABBIFY_NODE_KEY";
    case "USAGE":
      return `see tcli ${command} --help`;
    case "DEVICE_LOGIN_UNAVAILABLE":
      return "log in with a token instead: tcli login --token-stdin";
    case "LOGIN_EXPIRED":
      return "run tcli login --device again and have the code approved within its lifetime";
    case "USER_CODE_NOT_FOUND":
      return "check the code the waiting terminal shows (XXXX-XXXX); it expires after 10 minutes";
    case "APP_NOT_RUNNING":
      return "start it first: tcli start <app>";
    default:
      return undefined;
  }
}

/** `--tail N` as the node takes it: a whole number up to 10000. */
export function parseTail(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 10_000) {
    throw new TabbifyError("USAGE", `--tail takes a whole number up to 10000, not "${raw.slice(0, 20)}"`);
  }
  return Number(raw);
}

/** `--since`, checked here so a typo is a usage error (exit 2); the node resolves it. */
export function parseSinceOption(raw: string): void {
  try {
    parseSince(raw);
  } catch {
    throw new TabbifyError(
      "USAGE",
      `--since takes a duration back from now (90s, 10m, 2h, 7d) or a time like 2026-12-06T06:00:00Z, not "${raw.slice(0, 40)}"`,
    );
  }
}

/**
 * `tcli logs <app>`: copies the node's merged log stream to `write`, as it arrives. With `json`,
 * each line becomes `{"target", "line"}` (`!` lines, the node's notes on a target, get `note`).
 */
export async function streamLogs(
  client: NodeClient,
  ref: string,
  opts: { tail?: number; follow: boolean; json: boolean; env?: string; since?: string; timestamps?: boolean },
  write: (text: string) => void,
): Promise<void> {
  const body = await client.logs(ref, {
    follow: opts.follow,
    ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.since !== undefined ? { since: opts.since } : {}),
    ...(opts.timestamps ? { timestamps: true } : {}),
  });
  const decoder = new TextDecoder();
  let partial = "";
  const emit = (line: string) => {
    if (!opts.json) return write(`${line}\n`);
    const m = /^(\S+) ([|!]) ?(.*)$/.exec(line);
    const entry = m ? { target: m[1], [m[2] === "|" ? "line" : "note"]: m[3] } : { line };
    write(`${JSON.stringify(entry)}\n`);
  };
  for await (const chunk of body) {
    partial += decoder.decode(chunk, { stream: true });
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) emit(line);
  }
  if (partial !== "") emit(partial);
}

/**
 * `tcli stop|start|restart <app>`: the node's per-target answers. A target that failed is an error
 * (exit 1) naming it, after the answers are shown.
 */
export async function operate(
  client: NodeClient,
  ref: string,
  op: "stop" | "start" | "restart",
  env?: string,
): Promise<AppOperation> {
  return client.operate(ref, op, env);
}

export interface RemoveResult {
  purge: AppOperation;
  removed_from_registry: boolean;
  /** With `--artifacts`: the store and the versions deleted from it. */
  artifacts?: { store: string; versions: number[] };
}

/** `tcli rm <app>`: purge on every target, then out of the registry. Artifacts stay in the store. */
export async function removeApp(client: NodeClient, ref: string): Promise<RemoveResult> {
  const purge = await client.operate(ref, "purge");
  const failed = purge.targets.filter((t) => !t.ok);
  if (failed.length > 0) {
    throw new TabbifyError(
      "PURGE_FAILED",
      `purge failed on ${failed.map((t) => `${t.supervisor} (${t.error ?? "?"})`).join(", ")}; ${purge.app} stays in the registry: fix the target and run tcli rm again`,
    );
  }
  await client.removeApp(purge.uuid);
  return { purge, removed_from_registry: true };
}

/** Throws OPERATION_FAILED when any target did not do it, naming them. */
export function assertAllTargets(result: AppOperation): void {
  const failed = result.targets.filter((t) => !t.ok);
  if (failed.length === 0) return;
  throw new TabbifyError(
    "OPERATION_FAILED",
    `${result.action} failed on ${failed.map((t) => `${t.supervisor} (${t.error ?? "?"})`).join(", ")}: check tcli status ${result.app}`,
  );
}
