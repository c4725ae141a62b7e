import { posix } from "node:path";
import { isValidTenant } from "../auth/namespace.js";
import type { TabbifyError } from "../core/errors.js";
import { checkGitRef } from "../core/git-ref.js";
import { parseHttpRepoUrl } from "../core/repo-url.js";
import { isUuid } from "../core/uuid.js";
import type { BuildRequest } from "../pipeline/executor.js";
import { isSafeGitUsername } from "../pipeline/git-credentials.js";
import { fail } from "./failure.js";

export const SHA_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** `host[:port]` or `[v6]:port`, as docker reads a registry in an image reference. */
const REGISTRY_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/;

/** The request checked and normalised; refused here means nothing was cloned. */
export interface ValidBuild {
  request: BuildRequest;
  repository: string;
  /** POSIX path inside the clone, "." for its root. */
  context: string;
  dockerfile: string;
}

export function invalid(message: string): TabbifyError {
  return fail("BUILD_REQUEST_INVALID", message, { stage: "validate", user_fault: true, log_tail: [] });
}

/** A path from tabbify.toml, normalised; undefined when it is absolute or leaves the repository. */
function insideRepo(path: string): string | undefined {
  if (path.includes("\0") || path.includes("\\")) return undefined;
  if (path.startsWith("/")) return undefined;
  const normal = posix.normalize(path === "" ? "." : path).replace(/\/+$/, "");
  if (normal === ".." || normal.startsWith("../")) return undefined;
  return normal === "" ? "." : normal;
}

/** Checks a build request's shape and paths (throws BUILD_REQUEST_INVALID / BUILD_CONTEXT_INVALID). */
export function validateBuildRequest(body: unknown): ValidBuild {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalid("the build request must be a JSON object");
  }
  const b = body as Record<string, unknown>;
  const str = (key: string, required: boolean): string | undefined => {
    const v = b[key];
    if (v === undefined || v === null) {
      if (required) throw invalid(`${key} is required`);
      return undefined;
    }
    if (typeof v !== "string" || v === "") throw invalid(`${key} must be a non-empty string`);
    return v;
  };
  const repoUrl = str("repo_url", true)!;
  const parsedUrl = parseHttpRepoUrl(repoUrl);
  if ("problem" in parsedUrl) throw invalid(parsedUrl.problem);
  const ref = str("ref", true)!;
  if (checkGitRef(ref) !== undefined) {
    throw invalid("ref must be a commit sha, branch or tag name");
  }
  const tenant = str("tenant", true)!;
  if (!isValidTenant(tenant)) throw invalid("tenant is not a valid registry path component");
  const appUuid = str("app_uuid", true)!;
  if (!isUuid(appUuid)) throw invalid("app_uuid must be a UUID");
  const registry = str("registry", false) ?? str("registry_ula", false);
  if (registry === undefined) throw invalid("registry is required");
  if (!REGISTRY_RE.test(registry)) throw invalid("registry must be host[:port] without scheme or path");
  const expected = `${registry}/${tenant.toLowerCase()}/${appUuid.toLowerCase()}`;
  const repository = str("image_repository", false) ?? expected;
  if (repository !== expected) {
    throw invalid(`image_repository must be ${expected} (registry/tenant/app_uuid)`);
  }
  const buildKind = str("build_kind", false) ?? "docker";
  if (buildKind !== "docker") throw invalid(`build_kind ${buildKind} is not supported (only docker)`);
  const stableTag = str("stable_tag", false);
  if (stableTag !== undefined && (!TAG_RE.test(stableTag) || SHA_RE.test(stableTag))) {
    throw invalid("stable_tag must be a docker tag that is not a commit sha");
  }
  const contextRaw = str("context", false) ?? ".";
  const dockerfileRaw = str("dockerfile", false) ?? "Dockerfile";
  const context = insideRepo(contextRaw);
  const dockerfile = insideRepo(dockerfileRaw);
  for (const [name, raw, normal] of [
    ["context", contextRaw, context],
    ["dockerfile", dockerfileRaw, dockerfile],
  ] as const) {
    if (normal === undefined) {
      throw fail(
        "BUILD_CONTEXT_INVALID",
        `build ${name} ${JSON.stringify(raw.slice(0, 200))} is not a path inside the repository`,
        { stage: "validate", user_fault: true, log_tail: [] },
      );
    }
  }
  if (dockerfile === ".") throw invalid("dockerfile must name a file");
  const cloneToken = str("clone_token", false);
  const cloneUsername = str("clone_username", false);
  if (cloneUsername !== undefined && !isSafeGitUsername(cloneUsername))
    throw invalid("clone_username must be 1-200 characters without spaces or colons");
  const pushToken = str("push_token", false);
  const manifestToml = str("manifest_toml", false);
  const request: BuildRequest = {
    repo_url: repoUrl,
    ref,
    tenant,
    app_uuid: appUuid.toLowerCase(),
    registry,
    image_repository: repository,
    build_kind: "docker",
    context: context!,
    dockerfile: dockerfile!,
  };
  if (cloneToken !== undefined) request.clone_token = cloneToken;
  if (cloneUsername !== undefined) request.clone_username = cloneUsername;
  if (pushToken !== undefined) request.push_token = pushToken;
  if (stableTag !== undefined) request.stable_tag = stableTag;
  if (manifestToml !== undefined) request.manifest_toml = manifestToml;
  return { request, repository, context: context!, dockerfile: dockerfile! };
}
