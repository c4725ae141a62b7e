import { parse, stringify } from "smol-toml";
import { TabbifyError } from "../core/errors.js";
import { isTomlSyntaxError, parseTomlDocument } from "../core/toml-errors.js";
import { locateTomlKey } from "../core/toml-locate.js";
import { tomlKeyName, trackKeyReads } from "../core/toml-unknown-keys.js";
import { isUuid } from "../core/uuid.js";
import { readDeclarations } from "../pipeline/release-declarations.js";
import { isCleanAbsolutePath } from "../runtimes/child.js";

/**
 * `manifest.toml`: what `tcli push` uploads beside an app's files and what a supervisor reads to
 * run it. Schema per SEED-FACTS §3, widened to this platform's runtimes (process, wasm, docker).
 * Every key is honoured or refused with MANIFEST_INVALID, never accepted and ignored: a key the
 * parser never reads (a misspelling, or one the seed's schema has and this platform does not)
 * is refused by name, and so are `kernel` and a non-empty `dynamic_prefixes`.
 */
export interface AppManifest {
  app: {
    /** The app's UUID; `tcli push` stamps it before upload, so every stored manifest has one. */
    id?: string;
    name: string;
    /** A display version; the store's v<N> is the real one. */
    version?: string;
    kind: AppKind;
    description?: string;
  };
  lifecycle: {
    mode: LifecycleMode;
    idleTimeoutSec: number;
  };
  runtime: RuntimeSection;
  build?: BuildSection;
  routes: { dynamicPrefixes: string[] };
  env: Record<string, string>;
}

export const APP_KINDS = ["headless", "ui"] as const;
export type AppKind = (typeof APP_KINDS)[number];
export const LIFECYCLE_MODES = ["always_on", "on_request"] as const;
export type LifecycleMode = (typeof LIFECYCLE_MODES)[number];
/** `wasm-http` is the seed's name for a WAGI-style wasm app, kept as an alias of `wasm`. */
export const RUNTIME_TYPES = ["process", "wasm", "docker", "wasm-http"] as const;
export type RuntimeType = "process" | "wasm" | "docker";
export const BUILD_KINDS = ["docker"] as const;
export type BuildKind = (typeof BUILD_KINDS)[number];

export interface RuntimeSection {
  type: RuntimeType;
  /** The wasm module to run (wasm), relative to the app directory. */
  entry?: string;
  /** argv of the process, run in the app directory (process). */
  command?: string[];
  fuelPerRequest: number;
  memoryMb: number;
  vcpus?: number;
  /** The port the workload listens on, when it does not take PORT from the environment. */
  port?: number;
  kernel?: string;
  /** An image reference to pull instead of a shipped `image.tar.gz` (docker). */
  registryRef?: string;
  stateful: boolean;
  dataMount?: string;
}

export interface BuildSection {
  kind: BuildKind;
  dockerfile: string;
  context: string;
  /**
   * Programs `tcli push` finds on the pushing machine's PATH and adds, under their own names, to
   * a temporary copy of the build context before `docker build` (e.g. a static busybox for a
   * FROM scratch image). Plain names only.
   */
  hostPrograms?: string[];
}

export const DEFAULT_IDLE_TIMEOUT_SEC = 300;
export const DEFAULT_WASM_ENTRY = "app.wasm";
export const DEFAULT_FUEL_PER_REQUEST = 1_000_000_000;
export const DEFAULT_MEMORY_MB = 64;
/** A process app's default: Node alone takes ~50 MB, so 64 would leave a Node app nothing. */
export const DEFAULT_PROCESS_MEMORY_MB = 512;

type Table = Record<string, unknown>;

/** Where a key sits in the source, for `file:line:col` messages. */
interface Location {
  line: number;
  column: number;
}

/**
 * Parses and validates a manifest. Every error is `MANIFEST_INVALID` with a message of the form
 * `<file>:<line>:<col>: <what is wrong>`; `file` is only used in messages.
 */
export function parseManifest(source: string, file = "manifest.toml"): AppManifest {
  let doc: Table;
  try {
    doc = parseTomlDocument(source) as Table;
  } catch (err) {
    if (isTomlSyntaxError(err)) throw invalid(file, err, err.what);
    throw err;
  }
  const reads = trackKeyReads(doc);
  const manifest = new Validator(source, file, reads.doc).manifest();
  // [probes], [[environments]] and [deploy] are the node's to act on (release-declarations.ts);
  // checked here too, so a push with a bad one fails before anything is uploaded.
  readDeclarations(reads.doc, (key, why) => {
    throw invalid(file, locateTomlKey(source, key), why);
  });
  const unread = reads.firstUnread();
  if (unread) {
    const at = locateTomlKey(source, unread);
    throw invalid(
      file,
      at,
      `unknown key ${tomlKeyName(unread)}: manifest.toml has no such key (check its spelling, or remove it)`,
    );
  }
  return manifest;
}

function invalid(file: string, at: Location, what: string): TabbifyError {
  return new TabbifyError("MANIFEST_INVALID", `${file}:${at.line}:${at.column}: ${what}`, {
    file,
    line: at.line,
    column: at.column,
  });
}

class Validator {
  constructor(
    private readonly source: string,
    private readonly file: string,
    private readonly doc: Table,
  ) {}

  manifest(): AppManifest {
    const app = this.requiredTable("app");
    const lifecycle = this.requiredTable("lifecycle");
    const runtime = this.table("runtime", false);
    const build = this.table("build", false);
    const routes = this.table("routes", false);

    const id = this.optString("app", app, "id");
    if (id !== undefined && !isUuid(id)) {
      this.fail("app", "id", `[app] id must be a UUID, got "${id}"`);
    }
    const manifest: AppManifest = {
      app: {
        id: id?.toLowerCase(),
        name: this.reqString("app", app, "name"),
        version: this.optVersion(app),
        kind: this.oneOf("app", app, "kind", APP_KINDS, "headless"),
        description: this.optString("app", app, "description"),
      },
      lifecycle: {
        mode: this.oneOf("lifecycle", lifecycle, "mode", LIFECYCLE_MODES),
        idleTimeoutSec:
          this.optInt("lifecycle", lifecycle, "idle_timeout_sec", 0) ?? DEFAULT_IDLE_TIMEOUT_SEC,
      },
      runtime: this.runtime(runtime ?? {}),
      routes: { dynamicPrefixes: this.dynamicPrefixes(routes ?? {}) },
      env: this.env(),
    };
    if (manifest.app.id === undefined) delete manifest.app.id;
    if (build) {
      manifest.build = {
        kind: this.oneOf("build", build, "kind", BUILD_KINDS, "docker"),
        dockerfile: this.relativePath("build", build, "dockerfile") ?? "Dockerfile",
        context: this.relativePath("build", build, "context", true) ?? ".",
      };
      const programs = this.optStringList("build", build, "host_programs");
      for (const p of programs ?? []) {
        if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(p)) {
          this.fail(
            "build",
            "host_programs",
            `[build] host_programs: "${p.slice(0, 40)}" is not a program name`,
          );
        }
      }
      if (programs && programs.length > 0) manifest.build.hostPrograms = programs;
    }
    if (manifest.runtime.type === "docker" && !manifest.build && !manifest.runtime.registryRef) {
      this.fail(
        "runtime",
        "type",
        `[runtime] type = "docker" needs an image: add [build] kind = "docker" (tcli builds and ships it) or [runtime] registry_ref`,
      );
    }
    return manifest;
  }

  private runtime(t: Table): RuntimeSection {
    const declared = this.oneOf("runtime", t, "type", RUNTIME_TYPES, "wasm-http");
    const type: RuntimeType = declared === "wasm-http" ? "wasm" : declared;
    const section: RuntimeSection = {
      type,
      fuelPerRequest: this.optInt("runtime", t, "fuel_per_request", 1) ?? DEFAULT_FUEL_PER_REQUEST,
      memoryMb:
        this.optInt("runtime", t, "memory_mb", 1) ??
        (type === "process" ? DEFAULT_PROCESS_MEMORY_MB : DEFAULT_MEMORY_MB),
      stateful: this.optBool("runtime", t, "stateful") ?? false,
    };
    const vcpus = this.optInt("runtime", t, "vcpus", 1);
    if (vcpus !== undefined) section.vcpus = vcpus;
    const port = this.optInt("runtime", t, "port", 1);
    if (port !== undefined) {
      if (port > 65535) this.fail("runtime", "port", `[runtime] port must be 1..65535, got ${port}`);
      section.port = port;
    }
    if (t["kernel"] !== undefined) {
      // Firecracker's guest kernel: no runtime here boots a VM.
      this.fail(
        "runtime",
        "kernel",
        "[runtime] kernel is not supported: no runtime here boots a VM; remove the key",
      );
    }
    const registryRef = this.optString("runtime", t, "registry_ref");
    if (registryRef !== undefined) section.registryRef = registryRef;
    const dataMount = this.optString("runtime", t, "data_mount");
    if (dataMount !== undefined) {
      if (!isCleanAbsolutePath(dataMount))
        this.fail(
          "runtime",
          "data_mount",
          `[runtime] data_mount must be an absolute path without . or .. parts, got "${dataMount}"`,
        );
      if (!section.stateful) this.fail("runtime", "data_mount", "[runtime] data_mount needs stateful = true");
      section.dataMount = dataMount;
    }

    const entry = this.relativePath("runtime", t, "entry");
    if (type === "wasm") {
      section.entry = entry ?? DEFAULT_WASM_ENTRY;
      if (!section.entry.endsWith(".wasm")) {
        this.fail(
          "runtime",
          "entry",
          `[runtime] entry of a wasm app must be a .wasm file, got "${section.entry}"`,
        );
      }
    } else if (entry !== undefined) {
      section.entry = entry;
    }
    const command = this.optStringList("runtime", t, "command");
    if (type === "process") {
      if (command === undefined) {
        this.fail(
          "runtime",
          "command",
          `[runtime] command is required for type = "process", e.g. command = ["node", "server.js"]`,
        );
      }
      if (command.length === 0 || command[0] === "") {
        this.fail("runtime", "command", "[runtime] command must name a program");
      }
    }
    if (command !== undefined) section.command = command;
    return section;
  }

  /**
   * Every path of an app goes to its workload: there is no static-file layer in front of it for
   * dynamic prefixes to carve out of, so a non-empty list is refused rather than ignored.
   */
  private dynamicPrefixes(t: Table): string[] {
    const prefixes = this.optStringList("routes", t, "dynamic_prefixes") ?? [];
    if (prefixes.length > 0) {
      this.fail(
        "routes",
        "dynamic_prefixes",
        "[routes] dynamic_prefixes is not supported: every path is served by the app itself; remove the key",
      );
    }
    return prefixes;
  }

  private env(): Record<string, string> {
    const t = this.table("env", false);
    const env: Record<string, string> = {};
    for (const [k, value] of Object.entries(t ?? {})) {
      if (typeof value !== "string") this.fail("env", k, `[env] ${k} must be a string`);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        this.fail("env", k, `[env] "${k}" is not a valid variable name`);
      env[k] = value;
    }
    return env;
  }

  // ---- typed accessors: each failure names the key and points at its line

  private requiredTable(name: string): Table {
    const t = this.table(name, true);
    if (!t) throw new Error("unreachable: a required table is present or has thrown");
    return t;
  }

  private table(name: string, required: boolean): Table | undefined {
    const value = this.doc[name];
    if (value === undefined) {
      if (required) {
        throw invalid(this.file, { line: 1, column: 1 }, `the [${name}] table is required`);
      }
      return undefined;
    }
    if (!isTable(value)) this.fail(null, name, `${name} must be a table ([${name}])`);
    return value;
  }

  private reqString(table: string, t: Table, key: string): string {
    const value = this.optString(table, t, key);
    if (value === undefined || value.trim() === "") {
      this.fail(table, value === undefined ? null : key, `[${table}] ${key} is required`);
    }
    return value;
  }

  private optString(table: string, t: Table, key: string): string | undefined {
    const value = t[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string") this.fail(table, key, `[${table}] ${key} must be a string`);
    return value;
  }

  /** A display version: people write `version = 1` as often as `"1.0.0"`. */
  private optVersion(t: Table): string | undefined {
    const value = t["version"];
    if (value === undefined) return undefined;
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "bigint") return String(value);
    this.fail("app", "version", "[app] version must be a string");
  }

  private optInt(table: string, t: Table, key: string, min: number): number | undefined {
    const value = t[key];
    if (value === undefined) return undefined;
    const n = typeof value === "bigint" ? Number(value) : value;
    if (typeof n !== "number" || !Number.isSafeInteger(n)) {
      this.fail(table, key, `[${table}] ${key} must be an integer`);
    }
    if (n < min) this.fail(table, key, `[${table}] ${key} must be at least ${min}, got ${n}`);
    return n;
  }

  private optBool(table: string, t: Table, key: string): boolean | undefined {
    const value = t[key];
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") this.fail(table, key, `[${table}] ${key} must be true or false`);
    return value;
  }

  private optStringList(table: string, t: Table, key: string): string[] | undefined {
    const value = t[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.some((x) => typeof x !== "string")) {
      this.fail(table, key, `[${table}] ${key} must be a list of strings`);
    }
    return value as string[];
  }

  private oneOf<T extends string>(
    table: string,
    t: Table,
    key: string,
    allowed: readonly T[],
    fallback?: T,
  ): T {
    const value = t[key];
    const choices = allowed.map((a) => `"${a}"`).join(", ");
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      this.fail(table, null, `[${table}] ${key} is required: one of ${choices}`);
    }
    if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
      const shown = typeof value === "string" ? `"${value}"` : JSON.stringify(value);
      this.fail(table, key, `[${table}] ${key} = ${shown} is not supported: use one of ${choices}`);
    }
    return value as T;
  }

  /** A path inside the app directory: relative, `/`-separated, no `..`. */
  private relativePath(table: string, t: Table, key: string, allowDot = false): string | undefined {
    const value = this.optString(table, t, key);
    if (value === undefined) return undefined;
    const normalized = value.replace(/^\.\/+/, "").replace(/\/+$/, "");
    if (allowDot && (normalized === "." || normalized === "")) return ".";
    if (
      normalized === "" ||
      value.startsWith("/") ||
      value.includes("\\") ||
      normalized.split("/").some((p) => p === ".." || p === "." || p === "")
    ) {
      this.fail(
        table,
        key,
        `[${table}] ${key} must be a relative path inside the app directory, got "${value}"`,
      );
    }
    return normalized;
  }

  /** Throws MANIFEST_INVALID pointing at `key` in `[table]`, or at the table header when key is null. */
  private fail(table: string | null, key: string | null, what: string): never {
    throw invalid(this.file, locate(this.source, table, key), what);
  }
}

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Where `key` of `[table]` is written (column of the key), or the table header when key is null. */
export function locate(source: string, table: string | null, key: string | null): Location {
  const path = [...(table === null ? [] : [table]), ...(key === null ? [] : [key])];
  const at = locateTomlKey(source, path);
  return { line: at.line, column: at.column };
}

/**
 * Returns `source` with `[app].id` set to `uuid`, keeping everything else (comments, order,
 * formatting) as written: an existing `id = …` line in `[app]` is replaced, otherwise one is
 * inserted right after the `[app]` header. Manifests that spell the table some other way
 * (`app = { … }`, dotted keys) are re-serialized instead, which drops their comments.
 */
export function stampAppId(source: string, uuid: string): string {
  const lines = source.split("\n");
  let inApp = false;
  let headerIndex = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (/^\[[^[]/.test(line)) {
      inApp = /^\[\s*app\s*\]/.test(line);
      if (inApp && headerIndex === -1) headerIndex = i;
      continue;
    }
    if (inApp && /^(id|"id"|'id')\s*=/.test(line)) {
      const indent = /^\s*/.exec(lines[i]!)![0];
      lines[i] = `${indent}id = "${uuid}"`;
      return verifyStamp(lines.join("\n"), uuid, source);
    }
  }
  if (headerIndex >= 0) {
    lines.splice(headerIndex + 1, 0, `id = "${uuid}"`);
    return verifyStamp(lines.join("\n"), uuid, source);
  }
  const doc = parse(source) as Table;
  const app = isTable(doc["app"]) ? doc["app"] : {};
  doc["app"] = { ...app, id: uuid };
  return verifyStamp(`${stringify(doc)}\n`, uuid, source);
}

/** A text edit must not change meaning beyond the id: re-parse and compare. */
function verifyStamp(stamped: string, uuid: string, original: string): string {
  const before = parse(original) as Table;
  const after = parse(stamped) as Table;
  const app = after["app"];
  if (!isTable(app) || app["id"] !== uuid) {
    throw new Error("stamping [app].id produced a manifest without that id");
  }
  const beforeApp = isTable(before["app"]) ? before["app"] : {};
  before["app"] = { ...beforeApp, id: uuid };
  if (JSON.stringify(canonical(before)) !== JSON.stringify(canonical(after))) {
    throw new Error("stamping [app].id changed other keys of the manifest");
  }
  return stamped;
}

function canonical(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(canonical);
  if (isTable(value)) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical(value[k])]),
    );
  }
  return value;
}
