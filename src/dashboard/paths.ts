/**
 * The top-level path segments the dashboard's pages live under. The node answers `GET /` and
 * `GET /<section>` or `/<section>/...` for each of these with the dashboard's index.html (the UI's
 * router takes it from there); every other path stays the API's. The UI's route table
 * (ui/routes.tsx) uses only paths under these sections. None of them may be an API prefix
 * (`v1`, `v2`, `api`, `app`, `git`, `mcp`, `docs`, `openapi.json`, `health`, `healthz`):
 * src/dashboard/paths.test.ts checks.
 */
export const dashboardSections = [
  "login",
  "apps",
  "device",
  "audit",
  "topology",
  "review",
  "proofs",
  "registry",
] as const;

/** Where the built assets are served from: hashed names, cached for a year. */
export const ASSET_PREFIX = "/dashboard-assets/";

/** The dashboard's own small API: login, logout, who am I. */
export const SESSION_API = "/api/dashboard";
