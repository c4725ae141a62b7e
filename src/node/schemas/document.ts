import type { DescribeOptions } from "../../core/api-docs.js";
import { nodeVersion } from "../version.js";

/** The node API's OpenAPI header: served at `GET /openapi.json`, shown at `GET /docs`. */
export const nodeApiDocument: DescribeOptions = {
  title: "Tabbify node API",
  version: nodeVersion,
  description:
    "The control plane: roster, deploys, app registry, releases, mesh and the `/app/<uuid>` proxy. " +
    "Errors are `{error, code}` with a stable code. The image registry's `/v2` is described by the " +
    "OCI distribution spec (https://github.com/opencontainers/distribution-spec/blob/main/spec.md), not here. " +
    "`POST /mcp` speaks the Model Context Protocol (Streamable HTTP) with the same credentials.",
  security: [
    { name: "nodeKey", description: "TABBIFY_NODE_KEY: the operator's key, every tenant" },
    { name: "tenantToken", description: "A tenant token from the auth service: its own tenant's apps only" },
    { name: "joinToken", description: "A mesh join token (`tabbify mesh token`): mesh routes only" },
    { name: "supervisorKey", description: "The supervisors' API key, which the node also holds" },
    {
      name: "sessionToken",
      description: "A handler deploy session's credential: that session only, 15 minutes",
    },
    {
      name: "registryEventsToken",
      description:
        "TABBIFY_REGISTRY_EVENTS_TOKEN (default: the node key): registry notifications and GC roots",
    },
    {
      name: "hookToken",
      header: "x-tabbify-hook-token",
      description: "Minted for one git push in progress, for its pre-receive hook only",
    },
    {
      name: "gitBasic",
      scheme: "basic",
      description: "git over HTTP: any user name, the node key or a tenant token as password",
    },
    {
      name: "dashboardSession",
      cookie: "tabbify_session",
      description:
        "The dashboard's session cookie (POST /api/dashboard/login): acts as the token logged in with; writes need x-csrf-token",
    },
  ],
};
