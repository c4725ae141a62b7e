import { TabbifyError } from "../../core/errors.js";
import { redactUrl } from "../github.js";
import { resolveAppUuid } from "../plan.js";
import { parseTabbifyToml, TABBIFY_TOML } from "../tabbify-toml.js";
import type { Step } from "./context.js";

/** Reads and parses tabbify.toml at the deploy's commit, and settles the app's UUID from it. */
export const fetchManifest: Step = async (state, ctx) => {
  const { request } = state.plan;
  const ref = request.sha ?? request.ref;
  const source = await ctx.deps.manifests.fetchManifest(
    request.repoUrl,
    ref,
    state.cloneToken,
    state.cloneUsername,
  );
  if (source === null) {
    throw new TabbifyError(
      "TABBIFY_TOML_MISSING",
      `${TABBIFY_TOML}: not found in ${redactUrl(request.repoUrl)} at ${ref}`,
    );
  }
  state.manifestToml = source;
  state.manifest = parseTabbifyToml(source);
  state.appUuid = resolveAppUuid(request.appUuid, state.manifest.app.id, request.repoUrl);
  await ctx.deps.store.update(state.plan.id, { app_uuid: state.appUuid });
  return {
    message: `${TABBIFY_TOML} read: app ${state.manifest.app.name} (${state.appUuid})`,
    data: {
      app_uuid: state.appUuid,
      app_name: state.manifest.app.name,
      deploy_targets: state.manifest.deploy.length,
    },
  };
};
