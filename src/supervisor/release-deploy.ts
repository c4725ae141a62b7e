import { TabbifyError } from "../core/errors.js";
import { isLowercaseUuid } from "../core/uuid.js";
import { type AppProbes, parseAppProbes } from "../runtimes/app-probes.js";
import type { WorkloadSpec } from "../runtimes/runtime.js";
import type { SupervisorContext } from "./context.js";
import { deployApp } from "./lifecycle.js";
import type { StartResult } from "./supervisor.js";

/**
 * What the node's release rollouts add to `POST /v1/apps/:uuid/deploy`:
 *
 * - `environment`: the environment the target runs the app for. A target marked `prod` takes
 *   only a digest-pinned image (`repo@sha256:…`) or an exact artifact version (`v<N>`); anything
 *   else (a tag, `latest`, a raw directory) is REF_NOT_PINNED (400) and changes nothing: the
 *   supervisor holds the line even if a caller skips the node's own check.
 * - `artifact_version`: roll the artifact store's version N of the app (a `tcli push` release),
 *   swapped in like any deploy. The body then names no runtime: the stored manifest does.
 * - `probes`: the app's declared probes, checked on the new workload before it takes requests.
 */

const PINNED_IMAGE = /^[^@\s]+@sha256:[0-9a-f]{64}$/;
const EXACT_VERSION = /^v[1-9][0-9]{0,8}$/;
const ENVIRONMENT = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Throws REF_NOT_PINNED when a body for a prod target names anything but a pinned release. */
export function assertPinnedForProd(body: Record<string, unknown>): void {
  const environment = body.environment;
  if (environment === undefined) return;
  if (typeof environment !== "string" || !ENVIRONMENT.test(environment)) {
    throw new TabbifyError("SPEC_INVALID", "environment must be an environment name ([a-z0-9-])");
  }
  if (environment !== "prod") return;
  if (body.artifact_version !== undefined) {
    if (typeof body.artifact_version !== "string" || !EXACT_VERSION.test(body.artifact_version)) {
      throw notPinned(String(body.artifact_version));
    }
    return;
  }
  const ref = body.ref ?? body.image;
  if (typeof ref !== "string" || !PINNED_IMAGE.test(ref) || body.image_archive !== undefined) {
    throw notPinned(typeof ref === "string" ? ref : "a spec without an image");
  }
}

function notPinned(what: string): TabbifyError {
  return new TabbifyError(
    "REF_NOT_PINNED",
    `REF_NOT_PINNED: a prod target runs only repo@sha256:<digest> or an exact artifact version, not ${what.slice(0, 200)}`,
  );
}

export interface ArtifactDeploy {
  /** The store's version number N of `v<N>`. */
  version: number;
  /**
   * The app the store holds the version under, when the target runs it under another uuid (an
   * environment's: UUID v5 of the app's). Default: the uuid deployed to.
   */
  storeApp?: string;
  env?: Record<string, string>;
  probes?: AppProbes;
  releaseManifest?: string;
}

const artifactFields = new Set([
  "artifact_version",
  "artifact_app",
  "environment",
  "env",
  "probes",
  "release_manifest",
]);

/** The body of an artifact rollout; SPEC_INVALID naming what is wrong. */
export function artifactDeployFromBody(body: Record<string, unknown>): ArtifactDeploy {
  assertPinnedForProd(body);
  const unknown = Object.keys(body).filter((k) => !artifactFields.has(k));
  if (unknown.length > 0) {
    throw new TabbifyError("SPEC_INVALID", `an artifact_version deploy takes no ${unknown.join(", ")}`);
  }
  const label = body.artifact_version;
  if (typeof label !== "string" || !EXACT_VERSION.test(label)) {
    throw new TabbifyError(
      "SPEC_INVALID",
      "artifact_version must be v<N>, a version the artifact store holds",
    );
  }
  const out: ArtifactDeploy = { version: Number(label.slice(1)) };
  if (body.artifact_app !== undefined) {
    if (typeof body.artifact_app !== "string" || !isLowercaseUuid(body.artifact_app)) {
      throw new TabbifyError("SPEC_INVALID", "artifact_app must be the app's lowercase uuid");
    }
    out.storeApp = body.artifact_app;
  }
  if (body.env !== undefined) {
    const env = body.env;
    if (
      typeof env !== "object" ||
      env === null ||
      Array.isArray(env) ||
      Object.values(env).some((v) => typeof v !== "string")
    ) {
      throw new TabbifyError("SPEC_INVALID", "env must be a map of strings");
    }
    out.env = env as Record<string, string>;
  }
  const probes = parseAppProbes(body.probes);
  if (probes) out.probes = probes;
  if (typeof body.release_manifest === "string") out.releaseManifest = body.release_manifest;
  return out;
}

/** Rolls the artifact store's version onto the app, under the app's lock (the caller holds it). */
export async function deployArtifactVersion(
  ctx: SupervisorContext,
  uuid: string,
  deploy: ArtifactDeploy,
): Promise<StartResult & { swapped: boolean }> {
  const { spec, label } = await artifactSpec(ctx, uuid, deploy);
  return deployApp(ctx, uuid, spec, label);
}

/** The spec the artifact store's version runs with, the body's env and probes laid over it. */
export async function artifactSpec(
  ctx: SupervisorContext,
  uuid: string,
  deploy: ArtifactDeploy,
): Promise<{ spec: WorkloadSpec; label: string }> {
  const apps = ctx.opts.apps;
  if (!apps) {
    throw new TabbifyError(
      "SPEC_INVALID",
      "this supervisor has no artifact store: it cannot roll an artifact_version",
    );
  }
  const fetched = await apps.fetch(deploy.storeApp ?? uuid, deploy.version);
  const spec: WorkloadSpec = { ...fetched.spec };
  if (deploy.env) spec.env = { ...(fetched.spec.env ?? {}), ...deploy.env };
  if (deploy.probes) spec.probes = deploy.probes;
  if (deploy.releaseManifest) spec.releaseManifest = deploy.releaseManifest;
  return { spec, label: fetched.label };
}
