import { isAbsolute } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { parseAppProbes } from "../runtimes/app-probes.js";
import { checkEgress, isCleanAbsolutePath } from "../runtimes/child.js";
import { type RuntimeKind, runtimeKinds, type WorkloadSpec } from "../runtimes/runtime.js";
import { assertPinnedForProd } from "./release-deploy.js";

/**
 * The start/deploy request body (snake_case on the wire) turned into a WorkloadSpec. Shape
 * errors are caught here, before any runtime is asked; whether the artifact exists and the host
 * can run it is the runtime's `validate`.
 */

const startFields = new Set([
  "runtime",
  "artifact_dir",
  "command",
  "image",
  "image_archive",
  "entry",
  "env",
  "limits",
  "stateful",
  "data_mount",
  "lifecycle",
  "egress",
]);
/** `release_manifest` is set by the supervisor itself (see src/main/deploy-release.ts), never sent. */
const deployFields = new Set([...startFields, "ref", "release_manifest", "environment", "probes"]);

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new TabbifyError("SPEC_INVALID", `${field} must be a non-empty string`);
  }
  return value;
}

function absolutePath(body: Record<string, unknown>, field: string): string | undefined {
  const value = optionalString(body, field);
  if (value !== undefined && !isAbsolute(value)) {
    throw new TabbifyError("SPEC_INVALID", `${field} must be an absolute path on the supervisor's host`);
  }
  return value;
}

export function specFromBody(raw: unknown, opts: { deploy: boolean }): WorkloadSpec {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TabbifyError("SPEC_INVALID", "the body must be a JSON object");
  }
  const body = raw as Record<string, unknown>;
  const allowed = opts.deploy ? deployFields : startFields;
  const unknown = Object.keys(body).filter((k) => !allowed.has(k));
  if (unknown.length > 0) throw new TabbifyError("SPEC_INVALID", `unknown field(s): ${unknown.join(", ")}`);
  if (opts.deploy) assertPinnedForProd(body);
  const runtime = body.runtime;
  if (typeof runtime !== "string" || runtime === "") {
    throw new TabbifyError("SPEC_INVALID", `runtime is required (one of ${runtimeKinds.join(", ")})`);
  }
  if (!runtimeKinds.includes(runtime as RuntimeKind)) {
    throw new TabbifyError(
      "RUNTIME_UNKNOWN",
      `unknown runtime "${runtime.slice(0, 64)}" (one of ${runtimeKinds.join(", ")})`,
    );
  }
  const spec: WorkloadSpec = { runtime: runtime as RuntimeKind };
  const artifactDir = absolutePath(body, "artifact_dir");
  if (artifactDir) spec.artifactDir = artifactDir;
  if (body.command !== undefined) {
    const command = body.command;
    if (!Array.isArray(command) || command.length === 0 || command.some((a) => typeof a !== "string")) {
      throw new TabbifyError("SPEC_INVALID", "command must be a non-empty list of strings");
    }
    spec.command = command as string[];
  }
  const image = optionalString(body, "image");
  const ref = opts.deploy ? optionalString(body, "ref") : undefined;
  if (image && ref && image !== ref)
    throw new TabbifyError("SPEC_INVALID", "ref and image name different images");
  if (image ?? ref) spec.image = (image ?? ref)!;
  const archive = absolutePath(body, "image_archive");
  if (archive) spec.imageArchive = archive;
  const releaseManifest = absolutePath(body, "release_manifest");
  if (releaseManifest) spec.releaseManifest = releaseManifest;
  const entry = optionalString(body, "entry");
  if (entry) spec.entry = entry;
  if (body.limits !== undefined) {
    const limits = body.limits as Record<string, unknown>;
    if (typeof limits !== "object" || limits === null)
      throw new TabbifyError("SPEC_INVALID", "limits must be an object");
    spec.limits = {};
    for (const [k, target] of [
      ["timeout_ms", "timeoutMs"],
      ["memory_mb", "memoryMb"],
      ["vcpus", "vcpus"],
    ] as const) {
      const v = limits[k];
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
        throw new TabbifyError("SPEC_INVALID", `limits.${k} must be a positive number`);
      }
      spec.limits[target] = v;
    }
  }
  Object.assign(spec, stateFromBody(body));
  const probes = opts.deploy ? parseAppProbes(body.probes) : undefined;
  if (probes) spec.probes = probes;
  if (body.egress !== undefined) {
    checkEgress(body.egress, spec.runtime);
    spec.egress = { allow: [...(body.egress as { allow: string[] }).allow] };
  }
  if (body.env !== undefined) {
    const env = body.env;
    if (typeof env !== "object" || env === null || Array.isArray(env)) {
      throw new TabbifyError("SPEC_INVALID", "env must be a map of strings");
    }
    for (const [name, value] of Object.entries(env)) {
      // Values are never echoed back: they may be secrets.
      if (typeof value !== "string")
        throw new TabbifyError("SPEC_INVALID", `env ${name.slice(0, 64)} must be a string`);
    }
    spec.env = env as Record<string, string>;
  }
  return spec;
}

/**
 * `stateful`, `data_mount` and `lifecycle {mode, idle_timeout_sec}`. The data directory itself is
 * the supervisor's to choose (app-data.ts): no body names a host path for it.
 */
function stateFromBody(body: Record<string, unknown>): Partial<WorkloadSpec> {
  const out: Partial<WorkloadSpec> = {};
  if (body.stateful !== undefined) {
    if (typeof body.stateful !== "boolean")
      throw new TabbifyError("SPEC_INVALID", "stateful must be true or false");
    if (body.stateful) out.stateful = true;
  }
  if (body.data_mount !== undefined) {
    if (!isCleanAbsolutePath(body.data_mount))
      throw new TabbifyError("SPEC_INVALID", "data_mount must be an absolute path without . or .. parts");
    if (!out.stateful) throw new TabbifyError("SPEC_INVALID", "data_mount needs stateful: true");
    out.dataMount = body.data_mount;
  }
  if (body.lifecycle !== undefined) {
    const l = body.lifecycle as Record<string, unknown> | null;
    const idle = l?.idle_timeout_sec ?? 300;
    if (
      typeof l !== "object" ||
      l === null ||
      (l.mode !== "always_on" && l.mode !== "on_request") ||
      typeof idle !== "number" ||
      !Number.isInteger(idle) ||
      idle < 1
    )
      throw new TabbifyError(
        "SPEC_INVALID",
        'lifecycle must be {mode: "always_on" | "on_request", idle_timeout_sec?: a positive integer}',
      );
    out.lifecycle = { mode: l.mode, idleTimeoutSec: idle };
  }
  return out;
}
