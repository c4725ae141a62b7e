import { isTabbifyError, TabbifyError } from "../../core/errors.js";
import type { BuildRequest, BuildResult } from "../deps.js";
import { imageRef } from "../plan.js";
import { errorMessage, type Step } from "./context.js";

/**
 * Has the builder build the commit and push it to our registry, then checks that what it reports
 * is the deploy's commit, the expected image reference and a well-formed digest.
 */
export const buildAndPush: Step = async (state, ctx) => {
  const registry = ctx.deps.registry;
  if (!registry)
    throw new TabbifyError("REGISTRY_MISSING", "no registry configured: nowhere to push the image");
  const { request } = state.plan;
  const appUuid = state.appUuid!;
  const manifest = state.manifest!;
  const pushToken = await registry.pushToken(request.tenant, appUuid);
  ctx.rememberSecret(pushToken);
  const client = ctx.deps.supervisorClient(state.builder!);
  const { log, flush } = ctx.stepLog("build_and_push");
  const buildRequest: BuildRequest = {
    repo_url: request.repoUrl,
    ref: request.sha ?? request.ref,
    tenant: request.tenant,
    app_uuid: appUuid,
    registry: registry.host,
    image_repository: `${registry.host}/${request.tenant.toLowerCase()}/${appUuid}`,
    push_token: pushToken,
    build_kind: "docker",
    context: manifest.build.context,
    dockerfile: manifest.build.dockerfile,
    manifest_toml: state.manifestToml!,
  };
  if (state.cloneToken !== undefined) buildRequest.clone_token = state.cloneToken;
  if (state.cloneUsername !== undefined) buildRequest.clone_username = state.cloneUsername;
  if (manifest.build.stableTag !== undefined) buildRequest.stable_tag = manifest.build.stableTag;
  let built: BuildResult;
  state.buildStartedAt = new Date().toISOString();
  try {
    built = await client.build(buildRequest, log);
  } catch (err) {
    await flush();
    if (isTabbifyError(err, "BUILD_FAILED")) throw err;
    throw new TabbifyError("BUILD_FAILED", `build on ${state.builder!.name} failed: ${errorMessage(err)}`);
  }
  await flush();
  if (request.sha !== undefined && built.commit_sha.toLowerCase() !== request.sha.toLowerCase()) {
    throw new TabbifyError(
      "BUILD_FAILED",
      `builder built commit ${built.commit_sha}, but the deploy is for ${request.sha}`,
    );
  }
  const expected = imageRef(registry.host, request.tenant, appUuid, built.commit_sha);
  if (built.image_ref !== expected) {
    throw new TabbifyError("BUILD_FAILED", `builder pushed ${built.image_ref}, expected ${expected}`);
  }
  if (!/^sha256:[0-9a-f]{64}$/.test(built.digest)) {
    throw new TabbifyError("BUILD_FAILED", `builder reported no valid image digest for ${expected}`);
  }
  state.imageRef = built.image_ref;
  state.digest = built.digest;
  state.commitSha = built.commit_sha;
  state.buildFinishedAt = new Date().toISOString();
  await ctx.deps.store.update(state.plan.id, { image_ref: built.image_ref, digest: built.digest });
  // The node is the build authority: what its builder pushed is signed here, with the tenant's
  // build key, which never leaves the node.
  const signature = await ctx.deps.signatures?.sign(request.tenant, appUuid, built.digest);
  return {
    message: `pushed ${built.image_ref}${signature ? ", signed" : ""}`,
    data: {
      image_ref: built.image_ref,
      digest: built.digest,
      commit_sha: built.commit_sha,
      ...(signature ? { signature } : {}),
    },
  };
};
