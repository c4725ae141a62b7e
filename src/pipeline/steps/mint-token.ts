import type { PipelineDeps } from "../deps.js";
import type { DeployRequest } from "../plan.js";
import type { Step } from "./context.js";

export const mintToken: Step = async (state, ctx) => {
  const acquired = await acquireToken(ctx.deps, state.plan.request);
  if (acquired.token !== undefined) {
    ctx.rememberSecret(acquired.token);
    state.cloneToken = acquired.token;
  }
  if (acquired.username !== undefined) state.cloneUsername = acquired.username;
  return { message: acquired.message, ...(acquired.data ? { data: acquired.data } : {}) };
};

/**
 * The token a deploy reads and clones with: the forge's standing access token, else an
 * installation token for the push's installation or (for requests naming none) the one the App
 * has on the repository; none means anonymous, which works for public repositories.
 */
export async function acquireToken(
  deps: PipelineDeps,
  request: DeployRequest,
): Promise<{ token?: string; username?: string; message: string; data?: Record<string, unknown> }> {
  if (deps.accessToken !== undefined && deps.accessToken !== "") {
    return { token: deps.accessToken, message: "using the configured access token" };
  }
  const credential = deps.hostCredentials?.(request.repoUrl);
  if (credential) {
    return {
      token: credential.password,
      username: credential.username,
      message: `using the node's credential for ${new URL(request.repoUrl).host}`,
    };
  }
  const tokens = deps.tokens;
  if (!tokens) {
    return {
      message:
        request.installationId === undefined
          ? "no installation: cloning anonymously"
          : "no GitHub App configured: cloning anonymously",
    };
  }
  let installationId = request.installationId;
  let how = "the push's";
  if (installationId === undefined) {
    installationId = await tokens.installationFor?.(request.repoUrl);
    if (installationId === undefined) {
      return { message: "the GitHub App is not installed on the repository: cloning anonymously" };
    }
    how = "the repository's";
  }
  const minted = await tokens.installationToken(installationId);
  return {
    token: minted.token,
    message: `installation token minted for ${how} installation ${installationId}`,
    data: { installation_id: installationId, expires_at: minted.expires_at },
  };
}
