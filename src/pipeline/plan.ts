import { appUuidFromRepo, parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { type DeployRuntime, deployRuntimes, type TomlDeployTarget } from "./tabbify-toml.js";

/**
 * A deploy as data: the request, the ordered step names, and the pure decisions the steps make
 * (builder choice, targets, capability check, app UUID, image reference). The executor runs the
 * steps and records them; everything here is side-effect free and unit-tested.
 *
 * Fatal errors (the whole deploy fails): UNRESOLVABLE_BUILDER, CAPABILITY_MISMATCH,
 * TARGETS_UNRESOLVABLE, REGISTRY_MISSING, BUILD_FAILED, TABBIFY_TOML_MISSING/INVALID.
 * Per-target failures (fan-out, verify) only mark that target's result.
 */

/** A supervisor as the roster shows it. Tags in frozen order: supervisor, process, wasm, docker, builder, firecracker. */
export interface RosterSupervisor {
  name: string;
  /** Base URL of its HTTP API. */
  address: string;
  /** Its host mesh address (a `[build].builder` hint may name it instead of the name). */
  ula?: string;
  tags: string[];
}

/** The node's live roster, read once per deploy so every decision sees the same list. */
export interface RosterView {
  supervisors(): Promise<RosterSupervisor[]>;
}

/** What started a deploy record: a build (the first four), or a rollout of an existing release. */
export type DeployTrigger =
  | "github"
  | "forgejo"
  | "api"
  | "git-push"
  | "rollback"
  | "promote"
  /** A `tcli push` release rolled to its first environment. */
  | "push";

export interface RequestedTarget {
  supervisor: string;
  runtime?: DeployRuntime;
}

/** What starts a deploy: a verified push or a `POST /v1/deploy` body. */
export interface DeployRequest {
  trigger: DeployTrigger;
  /** Clone URL, e.g. `https://github.com/o/r.git`. Never carries credentials. */
  repoUrl: string;
  /** Branch, tag or commit to build; a push gives its 40-hex `after`. */
  ref: string;
  /** The commit the trigger names, when it names one (pushes do); the build must produce it. */
  sha?: string;
  tenant: string;
  appUuid?: string;
  builder?: string;
  targets?: RequestedTarget[];
  /** GitHub App installation to mint a clone/contents token for; absent ⇒ anonymous (public repo). */
  installationId?: number;
  /** The webhook delivery that caused this deploy, for the record. */
  deliveryId?: string;
  /** `?wait=false`: fail DEPLOY_LOCKED rather than queue behind another rollout of the app. */
  noQueue?: boolean;
}

/** The environment builds land in and an app without declared environments has. */
export const DEFAULT_ENVIRONMENT = "prod";

export const stepNames = [
  "mint_token",
  "fetch_manifest",
  "pick_builder",
  "capability_check",
  "build_and_push",
  "verify_signature",
  "acquire_lock",
  "migrate",
  "fan_out",
  "verify",
] as const;
export type StepName = (typeof stepNames)[number];

export interface DeployPlan {
  id: string;
  request: DeployRequest;
  /**
   * In order. capability_check runs before build_and_push: a target that cannot run the app
   * aborts the deploy before a builder spends minutes on an image nobody can run.
   */
  steps: StepName[];
}

export function planDeploy(id: string, request: DeployRequest): DeployPlan {
  return { id, request, steps: [...stepNames] };
}

export interface DeployTarget {
  supervisor: string;
  runtime: DeployRuntime;
  env: Record<string, string>;
}

/** One item of a finished deploy's `results` (the `GET /v1/deploy/<id>/status` wire shape). */
export interface TargetResult {
  supervisor: string;
  runtime: DeployRuntime;
  success: boolean;
  app_ula: string;
  error?: string;
  digest?: string;
}

const hasTag = (s: RosterSupervisor, tag: string) => s.tags.includes(tag);
const byName = (a: RosterSupervisor, b: RosterSupervisor) => a.name.localeCompare(b.name);

/**
 * The builder: the hint (supervisor name or host address), else a `builder`-tagged supervisor,
 * else a `docker`-tagged one; ties go to the first name in sort order so the choice is stable.
 * A hinted supervisor must be able to build (builder or docker tag).
 */
export function pickBuilder(
  hint: string | undefined,
  supervisors: readonly RosterSupervisor[],
): RosterSupervisor {
  if (hint !== undefined && hint !== "") {
    const named = supervisors.find((s) => s.name === hint || (s.ula !== undefined && s.ula === hint));
    if (!named) {
      throw new TabbifyError("UNRESOLVABLE_BUILDER", `builder "${hint}" is not a supervisor on the roster`, {
        builder: hint,
      });
    }
    if (!hasTag(named, "builder") && !hasTag(named, "docker")) {
      throw new TabbifyError(
        "UNRESOLVABLE_BUILDER",
        `builder "${hint}" cannot build: it has neither the builder nor the docker tag (tags: ${named.tags.join(", ") || "none"})`,
        { builder: hint },
      );
    }
    return named;
  }
  const sorted = [...supervisors].sort(byName);
  const chosen = sorted.find((s) => hasTag(s, "builder")) ?? sorted.find((s) => hasTag(s, "docker"));
  if (!chosen) {
    throw new TabbifyError(
      "UNRESOLVABLE_BUILDER",
      supervisors.length === 0
        ? "no builder: the roster has no supervisors"
        : "no builder: no supervisor on the roster has the builder or docker tag",
    );
  }
  return chosen;
}

/**
 * Targets in order of precedence: the request's `targets`, else `[[deploy]]`, else one default
 * docker-capable supervisor running the docker runtime. Environment: `[env]`, overridden by the
 * matching `[[deploy]]` entry's `env`. A target without a runtime runs docker (the pipeline's
 * artifact is a container image).
 */
export function resolveTargets(
  requested: readonly RequestedTarget[] | undefined,
  tomlDeploy: readonly TomlDeployTarget[],
  supervisors: readonly RosterSupervisor[],
  baseEnv: Readonly<Record<string, string>> = {},
): DeployTarget[] {
  const envFor = (supervisor: string) => ({
    ...baseEnv,
    ...(tomlDeploy.find((d) => d.supervisor === supervisor)?.env ?? {}),
  });
  const chosen: RequestedTarget[] =
    requested && requested.length > 0 ? [...requested] : tomlDeploy.map((d) => ({ ...d }));
  if (chosen.length === 0) {
    const fallback = [...supervisors].sort(byName).find((s) => hasTag(s, "docker"));
    if (!fallback) {
      throw new TabbifyError(
        "TARGETS_UNRESOLVABLE",
        "no [[deploy]] targets and no docker-capable supervisor on the roster to fall back to",
      );
    }
    return [{ supervisor: fallback.name, runtime: "docker", env: { ...baseEnv } }];
  }
  const seen = new Set<string>();
  return chosen.map((t) => {
    if (typeof t.supervisor !== "string" || t.supervisor === "") {
      throw new TabbifyError("DEPLOY_REQUEST_INVALID", "every target needs a supervisor name");
    }
    if (t.runtime !== undefined && !(deployRuntimes as readonly string[]).includes(t.runtime)) {
      throw new TabbifyError(
        "DEPLOY_REQUEST_INVALID",
        `target ${t.supervisor}: runtime "${String(t.runtime)}" is not one of ${deployRuntimes.join(", ")}`,
      );
    }
    // One app has one runner per supervisor; two targets on the same host would fight over it.
    if (seen.has(t.supervisor)) {
      throw new TabbifyError(
        "DEPLOY_REQUEST_INVALID",
        `supervisor ${t.supervisor} is named twice in the targets`,
      );
    }
    seen.add(t.supervisor);
    return { supervisor: t.supervisor, runtime: t.runtime ?? "docker", env: envFor(t.supervisor) };
  });
}

/** Runtimes that can run the container image this pipeline builds. */
const imageRuntimes: readonly DeployRuntime[] = ["docker", "firecracker"];

/**
 * Every target against its supervisor's roster tags, before anything is dispatched: the
 * supervisor must be on the roster, advertise the runtime's tag, and the runtime must be one that
 * runs a container image. Any mismatch aborts the whole deploy; the error names every one.
 */
export function checkCapabilities(
  targets: readonly DeployTarget[],
  supervisors: readonly RosterSupervisor[],
): void {
  const problems: string[] = [];
  for (const t of targets) {
    const s = supervisors.find((x) => x.name === t.supervisor);
    if (!s) {
      problems.push(`${t.supervisor} is not on the roster`);
      continue;
    }
    if (!imageRuntimes.includes(t.runtime)) {
      problems.push(
        `${t.supervisor}: runtime ${t.runtime} cannot run a container image (use docker or firecracker)`,
      );
      continue;
    }
    if (!hasTag(s, t.runtime)) {
      problems.push(
        `${t.supervisor} cannot run ${t.runtime} (it offers: ${s.tags.filter((x) => x !== "supervisor" && x !== "builder").join(", ") || "nothing"})`,
      );
    }
  }
  if (problems.length > 0) {
    throw new TabbifyError("CAPABILITY_MISMATCH", `capability check failed: ${problems.join("; ")}`, {
      problems,
    });
  }
}

/**
 * A repository URL in one spelling, so the same repo gets the same app UUID whether it arrives as
 * a push's `clone_url` (`…/r.git`) or a `/v1/deploy` `repo_url` (`…/r`): credentials, query and
 * fragment dropped, scheme and host lowercased, trailing `/` and `.git` removed. Not a URL
 * (e.g. scp-style `git@host:o/r`)? Then only the trailing `/` and `.git` are removed.
 */
export function canonicalRepoUrl(repoUrl: string): string {
  const trimmed = repoUrl.trim();
  let out: string;
  try {
    const url = new URL(trimmed);
    out = `${url.protocol.toLowerCase()}//${url.host.toLowerCase()}${url.pathname}`;
  } catch {
    out = trimmed;
  }
  return out.replace(/\/+$/, "").replace(/\.git$/, "");
}

/**
 * The app's UUID: the request's `app_uuid`, else `[app].id`, else UUID v5 (URL namespace) of the
 * canonical repository URL, so a repo keeps its address and data across pushes.
 */
export function resolveAppUuid(
  requestUuid: string | undefined,
  tomlId: string | undefined,
  repoUrl: string,
): string {
  if (requestUuid !== undefined && requestUuid !== "") return parseAppUuid(requestUuid);
  if (tomlId !== undefined && tomlId !== "") return parseAppUuid(tomlId);
  return appUuidFromRepo(canonicalRepoUrl(repoUrl));
}

// One OCI repository path component (distribution spec): lowercase alphanumerics joined by separators.
const OCI_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** `<registry>/<tenant lowercased>/<app_uuid>:<40-hex commit sha>`, the image every target runs. */
export function imageRef(registryHost: string, tenant: string, appUuid: string, sha: string): string {
  if (registryHost === "" || /[/\s]|:\/\//.test(registryHost)) {
    throw new TabbifyError(
      "IMAGE_REF_INVALID",
      `registry "${registryHost}" must be a host[:port] without scheme or path`,
    );
  }
  const namespace = tenant.toLowerCase();
  if (!OCI_COMPONENT.test(namespace)) {
    throw new TabbifyError("IMAGE_REF_INVALID", `tenant "${tenant}" is not a valid registry namespace`);
  }
  if (!/^[0-9a-f]{40}$/i.test(sha)) {
    throw new TabbifyError("IMAGE_REF_INVALID", `"${sha.slice(0, 64)}" is not a 40-hex commit sha`);
  }
  return `${registryHost}/${namespace}/${parseAppUuid(appUuid)}:${sha.toLowerCase()}`;
}

const PINNED = /^[^@\s]+@sha256:[0-9a-f]{64}$/;

/**
 * `repository@digest` for a pushed `repository:tag` and its digest. Throws REF_NOT_PINNED when no
 * well-formed digest is known: a target is never handed a tag (or `latest`) alone.
 */
export function pinnedRef(imageRef: string, digest: string): string {
  const at = imageRef.indexOf("@");
  const named = at >= 0 ? imageRef.slice(0, at) : imageRef;
  const slash = named.lastIndexOf("/");
  const colon = named.lastIndexOf(":");
  const repository = colon > slash ? named.slice(0, colon) : named;
  const ref = `${repository}@${digest}`;
  if (!PINNED.test(ref) || (at >= 0 && imageRef.slice(at + 1) !== digest)) {
    throw new TabbifyError("REF_NOT_PINNED", `${imageRef.slice(0, 200)} is not pinned to a digest`);
  }
  return ref;
}
