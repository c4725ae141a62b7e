import { v7 as uuidV7, validate as validateUuid } from "uuid";
import { isValidTenant } from "../auth/namespace.js";
import { appUuidFromRepo } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { parseHttpRepoUrl } from "../core/repo-url.js";
import { isSshRepoUrl, parseSshRemote } from "../core/ssh-remote.js";
import { canonicalRepoUrl } from "../pipeline/plan.js";
import { type DeployRuntime, deployRuntimes } from "../pipeline/tabbify-toml.js";

/**
 * An app as the registry holds it and the API shows it. Only `name` and `tenant` must be given;
 * every other field has a default. `created_at` / `updated_at` are the node's: accepted in a body
 * (so a GET can be PUT back) but ignored.
 */
export interface AppBuild {
  kind: "docker";
  context: string;
  dockerfile: string;
  /** Supervisor name or host address to build on; null lets the node pick. */
  builder: string | null;
}

export interface App {
  name: string;
  uuid: string;
  tenant: string;
  description: string;
  repo_url: string | null;
  branch: string;
  /** Supervisors it deploys to; empty lets the node pick (firecracker/docker-tagged ones). */
  servers: string[];
  runtime: DeployRuntime;
  build: AppBuild;
  /** Environment variable NAMES the app reads; values are never stored here. */
  env: string[];
  /** Ordered; a build lands in the first. */
  environments: string[];
  labels: Record<string, string>;
  created_at: string;
  updated_at: string;
}

/** Where servers may come from: the live roster plus `--allowed-servers`. */
export interface ServerPolicy {
  allowed(): Set<string>;
}

const appFields = new Set([
  "name",
  "uuid",
  "tenant",
  "description",
  "repo_url",
  "branch",
  "servers",
  "runtime",
  "build",
  "env",
  "environments",
  "labels",
  "created_at",
  "updated_at",
]);
const buildFields = new Set(["kind", "context", "dockerfile", "builder"]);

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_KEY = /^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;

export function appInvalid(field: string, rule: string): TabbifyError {
  return new TabbifyError("APP_INVALID", `${field}: ${rule}`, { field, rule });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Why `name` is not an app name, or undefined. DNS label, ≤ 63, and never a UUID (ambiguous in URLs). */
export function appNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name === "") return "is required (a non-empty string)";
  if (name.length > 63) return "must be at most 63 characters (a DNS label)";
  if (!DNS_LABEL.test(name)) {
    return "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit";
  }
  if (validateUuid(name)) return "must not be a UUID (the API takes a name or a uuid in the same place)";
  return undefined;
}

/**
 * Why `branch` is not a branch name by git's ref-format rules (`git check-ref-format --branch`),
 * or undefined. Checked here so a name the registry accepts is always one git accepts.
 */
export function branchProblem(branch: unknown): string | undefined {
  if (typeof branch !== "string" || branch === "") return "must be a non-empty string";
  if (branch.length > 255) return "must be at most 255 characters";
  if (branch.startsWith("-")) return "must not start with '-'";
  if (branch === "@") return "must not be '@' alone";
  if (branch === "HEAD") return "must not be 'HEAD'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what git refuses
  if (/[\x00-\x20\x7f]/.test(branch)) return "must not contain control characters or spaces";
  if (/[~^:?*[\\]/.test(branch)) return "must not contain ~ ^ : ? * [ or \\";
  if (branch.includes("..")) return "must not contain '..'";
  if (branch.includes("@{")) return "must not contain '@{'";
  if (branch.startsWith("/") || branch.endsWith("/") || branch.includes("//")) {
    return "must not start or end with '/' or contain '//'";
  }
  if (branch.endsWith(".")) return "must not end with '.'";
  for (const part of branch.split("/")) {
    if (part.startsWith(".")) return "no '/'-separated part may start with '.'";
    if (part.endsWith(".lock")) return "no '/'-separated part may end with '.lock'";
  }
  return undefined;
}

function stringList(
  value: unknown,
  field: string,
  check: (item: string) => string | undefined,
  opts: { nonEmpty?: boolean } = {},
): string[] {
  if (!Array.isArray(value)) throw appInvalid(field, "must be a list of strings");
  const seen = new Set<string>();
  value.forEach((item, i) => {
    if (typeof item !== "string") throw appInvalid(`${field}[${i}]`, "must be a string");
    const problem = check(item);
    if (problem) throw appInvalid(`${field}[${i}]`, problem);
    if (seen.has(item)) throw appInvalid(`${field}[${i}]`, `"${item}" is listed twice`);
    seen.add(item);
  });
  if (opts.nonEmpty && value.length === 0) throw appInvalid(field, "must list at least one entry");
  return value as string[];
}

function optionalString(value: unknown, field: string, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw appInvalid(field, "must be a string");
  if (value.length > max) throw appInvalid(field, `must be at most ${max} characters`);
  return value;
}

function relativePathProblem(path: string): string | undefined {
  if (path === "") return "must not be empty";
  if (path.length > 255) return "must be at most 255 characters";
  if (path.startsWith("/") || path.split("/").includes("..")) return "must be a path inside the repository";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refused in paths
  if (/[\x00-\x1f\x7f\\]/.test(path)) return "must not contain control characters or backslashes";
  return undefined;
}

function parseBuild(value: unknown): AppBuild {
  const build: AppBuild = { kind: "docker", context: ".", dockerfile: "Dockerfile", builder: null };
  if (value === undefined || value === null) return build;
  if (!isObject(value)) throw appInvalid("build", "must be an object {kind, context, dockerfile, builder}");
  for (const key of Object.keys(value)) {
    if (!buildFields.has(key)) throw appInvalid(`build.${key}`, "is not a known field");
  }
  if (value.kind !== undefined && value.kind !== null && value.kind !== "docker") {
    throw appInvalid("build.kind", 'must be "docker"');
  }
  for (const key of ["context", "dockerfile"] as const) {
    const path = optionalString(value[key], `build.${key}`, 255);
    if (path === undefined) continue;
    const problem = relativePathProblem(path);
    if (problem) throw appInvalid(`build.${key}`, problem);
    build[key] = path;
  }
  const builder = optionalString(value.builder, "build.builder", 255);
  if (builder === "") throw appInvalid("build.builder", "must be a supervisor name or null");
  if (builder !== undefined) build.builder = builder;
  return build;
}

function parseLabels(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw appInvalid("labels", "must be an object of string values");
  const labels: Record<string, string> = {};
  for (const [key, raw] of Object.entries(value)) {
    if (!LABEL_KEY.test(key)) {
      throw appInvalid(`labels.${key.slice(0, 64)}`, "keys are 1-63 of letters, digits, '.', '_', '/', '-'");
    }
    if (typeof raw !== "string") throw appInvalid(`labels.${key}`, "must be a string");
    if (raw.length > 256) throw appInvalid(`labels.${key}`, "must be at most 256 characters");
    labels[key] = raw;
  }
  return labels;
}

export interface NormalizeContext {
  /** The app being replaced or patched, if it exists (its uuid, name and created_at stay). */
  existing?: App;
  /** The name the URL addresses, when it is a name. */
  urlName?: string;
  servers: ServerPolicy;
  now: Date;
}

/**
 * Validates a whole app document (a PUT body, or the result of a merge patch) and fills in the
 * defaults. Every failure is APP_INVALID naming the field and the rule it breaks.
 */
export function normalizeApp(input: unknown, ctx: NormalizeContext): App {
  if (!isObject(input)) throw appInvalid("body", "must be a JSON object");
  for (const key of Object.keys(input)) {
    if (!appFields.has(key)) throw appInvalid(key.slice(0, 64), "is not a known field");
  }
  const name = input.name ?? ctx.existing?.name ?? ctx.urlName;
  const nameProblem = appNameProblem(name);
  if (nameProblem) throw appInvalid("name", nameProblem);
  if (ctx.existing && name !== ctx.existing.name) {
    throw appInvalid("name", `cannot change (the app is "${ctx.existing.name}")`);
  }
  if (!ctx.existing && ctx.urlName !== undefined && name !== ctx.urlName) {
    throw appInvalid("name", `must match the name in the URL ("${ctx.urlName}")`);
  }

  if (input.tenant === undefined || input.tenant === null || input.tenant === "") {
    throw appInvalid("tenant", "is required");
  }
  if (typeof input.tenant !== "string" || !isValidTenant(input.tenant)) {
    throw appInvalid(
      "tenant",
      "must be letters and digits joined by '.', '_', '__' or '-' (a registry path component)",
    );
  }
  const tenant = input.tenant.toLowerCase();
  if (ctx.existing && tenant !== ctx.existing.tenant) {
    throw appInvalid("tenant", `cannot change (the app belongs to "${ctx.existing.tenant}")`);
  }

  let repoUrl: string | null = null;
  if (input.repo_url !== undefined && input.repo_url !== null) {
    if (typeof input.repo_url !== "string") throw appInvalid("repo_url", "must be a string or null");
    if (isSshRepoUrl(input.repo_url)) {
      // ssh remotes are fetched by the node with its own key; the user is part of the address.
      const ssh = parseSshRemote(input.repo_url);
      if ("problem" in ssh) throw appInvalid("repo_url", ssh.problem.replace(/^repo_url('s)? /, ""));
    } else {
      const parsed = parseHttpRepoUrl(input.repo_url);
      if ("problem" in parsed) throw appInvalid("repo_url", parsed.problem.replace(/^repo_url /, ""));
      if (parsed.url.username !== "" || parsed.url.password !== "") {
        throw appInvalid("repo_url", "must not carry credentials");
      }
    }
    repoUrl = input.repo_url;
  }

  let uuid: string;
  if (input.uuid !== undefined && input.uuid !== null) {
    if (typeof input.uuid !== "string" || !validateUuid(input.uuid))
      throw appInvalid("uuid", "must be a UUID");
    uuid = input.uuid.toLowerCase();
  } else {
    uuid = ctx.existing?.uuid ?? (repoUrl !== null ? appUuidFromRepo(canonicalRepoUrl(repoUrl)) : uuidV7());
  }
  if (ctx.existing && uuid !== ctx.existing.uuid) {
    throw appInvalid("uuid", `cannot change (the app's uuid is ${ctx.existing.uuid})`);
  }

  const branch = input.branch ?? "main";
  const branchRule = branchProblem(branch);
  if (branchRule) throw appInvalid("branch", branchRule);

  const allowed = ctx.servers.allowed();
  const servers = stringList(input.servers ?? [], "servers", (s) =>
    allowed.has(s) ? undefined : `"${s.slice(0, 64)}" is neither on the roster nor in --allowed-servers`,
  );

  const runtime = input.runtime ?? "docker";
  if (typeof runtime !== "string" || !(deployRuntimes as readonly string[]).includes(runtime)) {
    throw appInvalid("runtime", `must be one of ${deployRuntimes.join(", ")}`);
  }

  if (isObject(input.env)) {
    throw appInvalid("env", "lists variable names only; values are never stored in the registry");
  }
  const env = stringList(input.env ?? [], "env", (n) =>
    ENV_NAME.test(n) && n.length <= 255
      ? undefined
      : "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
  );
  const environments = stringList(
    input.environments ?? ["prod"],
    "environments",
    (e) => appNameProblem(e)?.replace("is required", "must not be empty"),
    { nonEmpty: true },
  );

  const now = ctx.now.toISOString();
  return {
    name: name as string,
    uuid,
    tenant,
    description: optionalString(input.description, "description", 1000) ?? "",
    repo_url: repoUrl,
    branch: branch as string,
    servers: [...servers],
    runtime: runtime as DeployRuntime,
    build: parseBuild(input.build),
    env: [...env],
    environments: [...environments],
    labels: parseLabels(input.labels),
    created_at: ctx.existing?.created_at ?? now,
    updated_at: now,
  };
}
