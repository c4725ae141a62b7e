import { parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { checkGitRef } from "../core/git-ref.js";
import { isTomlSyntaxError, parseTomlDocument } from "../core/toml-errors.js";
import { locateTomlKey } from "../core/toml-locate.js";
import { tomlKeyName, trackKeyReads } from "../core/toml-unknown-keys.js";
import { isCleanAbsolutePath } from "../runtimes/child.js";
import { type ReleaseDeclarations, readDeclarations } from "./release-declarations.js";

/**
 * `tabbify.toml`, the manifest a repository carries for git-push deploys. Known keys are
 * type-checked; a key the parser never reads (a misspelling) is refused, never accepted and
 * ignored; every error names the place: `tabbify.toml:<line>:<col>: <what>` (TABBIFY_TOML_INVALID).
 */

export const TABBIFY_TOML = "tabbify.toml";

export type DeployRuntime = "process" | "docker" | "wasm" | "firecracker";
export const deployRuntimes: readonly DeployRuntime[] = ["process", "docker", "wasm", "firecracker"];

export interface TomlDeployTarget {
  supervisor: string;
  runtime?: DeployRuntime;
  /** Per-target environment; overrides `[env]`. */
  env: Record<string, string>;
}

export interface TabbifyManifest {
  /** `branch`: the one branch whose pushes deploy (our extension; default the repository's default branch). */
  app: { id?: string; name: string; description?: string; branch?: string };
  build: { kind: "docker"; context: string; dockerfile: string; builder?: string; stableTag?: string };
  runtime: {
    lifecycle: "on_request" | "always_on";
    idleTimeoutSec: number;
    memoryMb: number;
    vcpus: number;
    port?: number;
    stateful: boolean;
    dataMount?: string;
  };
  routes: { dynamicPrefixes: string[] };
  deploy: TomlDeployTarget[];
  env: Record<string, string>;
  /** `[probes]`, `[[environments]]` and `[deploy] migrate` (release-declarations.ts). */
  declarations?: ReleaseDeclarations;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A key's position: table path (e.g. ["deploy", 1]) plus the key. */
type KeyPath = (string | number)[];

/** Where `path` is written, column of the value, so type errors point at it (see locateTomlKey). */
export function locateKey(source: string, path: KeyPath): { line: number; column: number } {
  const at = locateTomlKey(source, path);
  return { line: at.line, column: at.valueColumn };
}

function invalid(path: string, line: number, column: number, what: string): TabbifyError {
  return new TabbifyError("TABBIFY_TOML_INVALID", `${path}:${line}:${column}: ${what}`, {
    path,
    line,
    column,
  });
}

/** Parses and checks a tabbify.toml. `path` is how errors name the file. */
export function parseTabbifyToml(source: string, path = TABBIFY_TOML): TabbifyManifest {
  let doc: Record<string, unknown>;
  try {
    doc = parseTomlDocument(source);
  } catch (err) {
    if (isTomlSyntaxError(err)) throw invalid(path, err.line, err.column, err.what);
    throw err;
  }
  const reads = trackKeyReads(doc);
  doc = reads.doc;

  const fail = (keyPath: KeyPath, what: string): never => {
    const at = locateKey(source, keyPath);
    throw invalid(path, at.line, at.column, what);
  };
  const name = tomlKeyName;

  const table = (obj: Record<string, unknown>, key: string, keyPath: KeyPath): Record<string, unknown> => {
    const value = obj[key];
    if (value === undefined) return {};
    if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Date) {
      return fail(keyPath, `${name(keyPath)} must be a table`);
    }
    return value as Record<string, unknown>;
  };
  const optString = (obj: Record<string, unknown>, key: string, keyPath: KeyPath): string | undefined => {
    const value = obj[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string") return fail(keyPath, `${name(keyPath)} must be a string`);
    return value;
  };
  const optInt = (
    obj: Record<string, unknown>,
    key: string,
    keyPath: KeyPath,
    min: number,
    max: number,
  ): number | undefined => {
    const value = obj[key];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      return fail(keyPath, `${name(keyPath)} must be an integer`);
    }
    if (value < min || value > max)
      return fail(keyPath, `${name(keyPath)} must be between ${min} and ${max}`);
    return value;
  };
  const optBool = (obj: Record<string, unknown>, key: string, keyPath: KeyPath): boolean | undefined => {
    const value = obj[key];
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") return fail(keyPath, `${name(keyPath)} must be true or false`);
    return value;
  };
  const relativePath = (value: string, keyPath: KeyPath): string => {
    // The builder resolves these inside the clone; an absolute path or `..` would leave it.
    if (value.startsWith("/") || value.split(/[\\/]/).includes("..")) {
      return fail(keyPath, `${name(keyPath)} must be a path inside the repository`);
    }
    return value;
  };
  const envMap = (obj: Record<string, unknown>, key: string, keyPath: KeyPath): Record<string, string> => {
    const env = table(obj, key, keyPath);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) {
      if (!ENV_NAME.test(k))
        fail([...keyPath, k], `${name(keyPath)}.${k} is not a valid environment variable name`);
      if (typeof v !== "string") fail([...keyPath, k], `${name([...keyPath, k])} must be a string`);
      out[k] = v as string;
    }
    return out;
  };

  const app = table(doc, "app", ["app"]);
  const appName = optString(app, "name", ["app", "name"]);
  if (appName === undefined || appName.trim() === "") {
    const at = locateKey(source, ["app", "name"]);
    throw invalid(path, at.line, at.column, "app.name is required");
  }
  const manifest: TabbifyManifest = {
    app: { name: appName },
    build: { kind: "docker", context: ".", dockerfile: "Dockerfile" },
    runtime: { lifecycle: "on_request", idleTimeoutSec: 300, memoryMb: 512, vcpus: 1, stateful: false },
    routes: { dynamicPrefixes: [] },
    deploy: [],
    env: {},
  };
  const appId = optString(app, "id", ["app", "id"]);
  if (appId !== undefined) {
    try {
      manifest.app.id = parseAppUuid(appId);
    } catch {
      fail(["app", "id"], "app.id must be a UUID");
    }
  }
  const description = optString(app, "description", ["app", "description"]);
  if (description !== undefined) manifest.app.description = description;
  const branch = optString(app, "branch", ["app", "branch"]);
  if (branch !== undefined) {
    // A push names its branch as refs/heads/<branch>; compare with what git allows in that name.
    const validRef = checkGitRef(branch) === undefined && !branch.startsWith("refs/");
    if (!validRef) fail(["app", "branch"], `app.branch "${branch}" is not a branch name`);
    manifest.app.branch = branch;
  }

  const build = table(doc, "build", ["build"]);
  const kind = optString(build, "kind", ["build", "kind"]);
  if (kind !== undefined && kind !== "docker")
    fail(["build", "kind"], `build.kind "${kind}" is not supported (only "docker")`);
  const context = optString(build, "context", ["build", "context"]);
  if (context !== undefined) manifest.build.context = relativePath(context, ["build", "context"]);
  const dockerfile = optString(build, "dockerfile", ["build", "dockerfile"]);
  if (dockerfile !== undefined) manifest.build.dockerfile = relativePath(dockerfile, ["build", "dockerfile"]);
  const builder = optString(build, "builder", ["build", "builder"]);
  if (builder !== undefined) manifest.build.builder = builder;
  const stableTag = optString(build, "stable_tag", ["build", "stable_tag"]);
  if (stableTag !== undefined) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(stableTag)) {
      fail(["build", "stable_tag"], "build.stable_tag is not a valid image tag");
    }
    manifest.build.stableTag = stableTag;
  }

  const runtime = table(doc, "runtime", ["runtime"]);
  const lifecycle = optString(runtime, "lifecycle", ["runtime", "lifecycle"]);
  // The reference reads any value other than on_request as always_on; keep that.
  if (lifecycle !== undefined && lifecycle !== "on_request") manifest.runtime.lifecycle = "always_on";
  const idle = optInt(runtime, "idle_timeout_sec", ["runtime", "idle_timeout_sec"], 1, 7 * 24 * 3600);
  if (idle !== undefined) manifest.runtime.idleTimeoutSec = idle;
  const memory = optInt(runtime, "memory_mb", ["runtime", "memory_mb"], 16, 1024 * 1024);
  if (memory !== undefined) manifest.runtime.memoryMb = memory;
  const vcpus = optInt(runtime, "vcpus", ["runtime", "vcpus"], 1, 256);
  if (vcpus !== undefined) manifest.runtime.vcpus = vcpus;
  const port = optInt(runtime, "port", ["runtime", "port"], 1, 65535);
  // Every runtime hands the app its PORT; a fixed one would be accepted and ignored, so refuse it.
  if (port !== undefined)
    fail(["runtime", "port"], "runtime.port is not supported: the app must listen on the PORT it is given");
  const stateful = optBool(runtime, "stateful", ["runtime", "stateful"]);
  if (stateful !== undefined) manifest.runtime.stateful = stateful;
  const dataMount = optString(runtime, "data_mount", ["runtime", "data_mount"]);
  if (dataMount !== undefined) {
    if (!isCleanAbsolutePath(dataMount))
      fail(["runtime", "data_mount"], "runtime.data_mount must be an absolute path without . or .. parts");
    if (!manifest.runtime.stateful)
      fail(["runtime", "data_mount"], "runtime.data_mount needs stateful = true");
    manifest.runtime.dataMount = dataMount;
  }

  const routes = table(doc, "routes", ["routes"]);
  const prefixes = routes["dynamic_prefixes"];
  if (prefixes !== undefined) {
    if (!Array.isArray(prefixes) || !prefixes.every((p) => typeof p === "string")) {
      fail(["routes", "dynamic_prefixes"], "routes.dynamic_prefixes must be a list of strings");
    }
    // Every path goes to the app: there is no static-file layer for prefixes to carve out of.
    if ((prefixes as string[]).length > 0)
      fail(
        ["routes", "dynamic_prefixes"],
        "routes.dynamic_prefixes is not supported: every path is served by the app itself; remove the key",
      );
    manifest.routes.dynamicPrefixes = prefixes as string[];
  }

  manifest.env = envMap(doc, "env", ["env"]);

  const declarations = readDeclarations(doc, fail);
  if (Object.keys(declarations).length > 0) manifest.declarations = declarations;
  const deploy = doc["deploy"];
  // `[deploy]` (a table) holds `migrate`; `[[deploy]]` (an array of tables) lists targets.
  const deployTable = typeof deploy === "object" && deploy !== null && !Array.isArray(deploy);
  if (deploy !== undefined && !deployTable) {
    if (!Array.isArray(deploy))
      fail(["deploy"], "deploy must be [[deploy]] targets or a [deploy] table with migrate");
    (deploy as unknown[]).forEach((entry, i) => {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        fail(["deploy", i], `deploy[${i}] must be a table`);
      }
      const target = entry as Record<string, unknown>;
      const supervisor = optString(target, "supervisor", ["deploy", i, "supervisor"]);
      if (supervisor === undefined || supervisor === "") {
        const at = locateKey(source, ["deploy", i, "supervisor"]);
        throw invalid(path, at.line, at.column, `deploy[${i}].supervisor is required`);
      }
      const out: TomlDeployTarget = { supervisor, env: envMap(target, "env", ["deploy", i, "env"]) };
      const rt = optString(target, "runtime", ["deploy", i, "runtime"]);
      if (rt !== undefined) {
        if (!(deployRuntimes as readonly string[]).includes(rt)) {
          fail(["deploy", i, "runtime"], `deploy[${i}].runtime must be one of ${deployRuntimes.join(", ")}`);
        }
        out.runtime = rt as DeployRuntime;
      }
      manifest.deploy.push(out);
    });
  }
  const unread = reads.firstUnread();
  if (unread) {
    const at = locateTomlKey(source, unread);
    throw invalid(
      path,
      at.line,
      at.column,
      `unknown key ${tomlKeyName(unread)}: tabbify.toml has no such key (check its spelling, or remove it)`,
    );
  }
  return manifest;
}
