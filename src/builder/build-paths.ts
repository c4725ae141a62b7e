import { posix } from "node:path";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { ValueErrorType } from "@sinclair/typebox/errors";
import type { TabbifyError } from "../core/errors.js";
import type { BuildRequest } from "../pipeline/executor.js";
import { fail } from "./failure.js";
import { BuildRequestBody } from "./schemas.js";

/**
 * What a build request's schema (schemas.ts) cannot say, checked before anything runs: one
 * registry named, the repository pushed to being `<registry>/<tenant>/<app_uuid>`, and the
 * context and Dockerfile resolved to paths inside the repository. The route's schema has checked
 * the shape by then; a caller in this process is held to the same schema here.
 */

/** The request resolved; refused here means nothing was cloned. */
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

const bodyCheck = TypeCompiler.Compile(BuildRequestBody);

/** The schema's own sentence for a failing property (its `x-message`), else TypeBox's. */
function schemaSentence(body: unknown): string {
  const first = bodyCheck.Errors(body).First();
  if (!first) return "the build request is invalid";
  const custom = (first.schema as Record<string, unknown>)["x-message"];
  if (typeof custom === "string") return custom;
  if (typeof custom === "object" && custom !== null) {
    const byKeyword = custom as Record<string, unknown>;
    const keyword =
      first.type === ValueErrorType.StringPattern
        ? "pattern"
        : first.type === ValueErrorType.StringMaxLength
          ? "maxLength"
          : "default";
    const sentence = byKeyword[keyword] ?? byKeyword["default"];
    if (typeof sentence === "string") return sentence;
  }
  return `${first.path.slice(1) || "the build request"}: ${first.message}`;
}

/** A path from tabbify.toml, normalised; undefined when it is absolute or leaves the repository. */
function insideRepo(path: string): string | undefined {
  if (path.includes("\0") || path.includes("\\")) return undefined;
  if (path.startsWith("/")) return undefined;
  const normal = posix.normalize(path === "" ? "." : path).replace(/\/+$/, "");
  if (normal === ".." || normal.startsWith("../")) return undefined;
  return normal === "" ? "." : normal;
}

function outside(name: string, raw: string): TabbifyError {
  return fail(
    "BUILD_CONTEXT_INVALID",
    `build ${name} ${JSON.stringify(raw.slice(0, 200))} is not a path inside the repository`,
    { stage: "validate", user_fault: true, log_tail: [] },
  );
}

/**
 * Resolves a build request (throws BUILD_REQUEST_INVALID / BUILD_CONTEXT_INVALID with the
 * builder's failure detail).
 */
export function resolveBuild(body: BuildRequestBody): ValidBuild {
  if (!bodyCheck.Check(body)) throw invalid(schemaSentence(body));
  const registry = body.registry ?? body.registry_ula;
  if (registry === undefined || registry === null) throw invalid("registry is required");
  const appUuid = body.app_uuid.toLowerCase();
  const expected = `${registry}/${body.tenant.toLowerCase()}/${appUuid}`;
  const repository = body.image_repository ?? expected;
  if (repository !== expected) {
    throw invalid(`image_repository must be ${expected} (registry/tenant/app_uuid)`);
  }
  const contextRaw = body.context ?? ".";
  const dockerfileRaw = body.dockerfile ?? "Dockerfile";
  const context = insideRepo(contextRaw);
  if (context === undefined) throw outside("context", contextRaw);
  const dockerfile = insideRepo(dockerfileRaw);
  if (dockerfile === undefined) throw outside("dockerfile", dockerfileRaw);
  if (dockerfile === ".") throw invalid("dockerfile must name a file");
  const request: BuildRequest = {
    repo_url: body.repo_url,
    ref: body.ref,
    tenant: body.tenant,
    app_uuid: appUuid,
    registry,
    image_repository: repository,
    build_kind: "docker",
    context,
    dockerfile,
  };
  for (const key of ["clone_token", "clone_username", "push_token", "stable_tag", "manifest_toml"] as const) {
    const value = body[key];
    if (value !== undefined && value !== null) request[key] = value;
  }
  return { request, repository, context, dockerfile };
}
