import type { AppTables } from "./tables/apps.js";
import type { DeployReviewTables } from "./tables/deploy-review.js";
import type { DeployTables } from "./tables/deploys.js";
import type { EnvTables } from "./tables/env.js";
import type { MeshTables } from "./tables/mesh.js";
import type { MetaTables } from "./tables/meta.js";
import type { PlatformUpgradeTables } from "./tables/platform-upgrades.js";
import type { RegistryEventTables } from "./tables/registry-events.js";
import type { ReleaseTables } from "./tables/releases.js";
import type { WebhookTables } from "./tables/webhooks.js";

/**
 * Every table the node keeps, as Kysely sees them. One interface per area in tables/; a new area
 * adds its file there, its migration in migrations/, and one `extends` here.
 */
export interface Database
  extends MetaTables,
    DeployTables,
    AppTables,
    ReleaseTables,
    WebhookTables,
    MeshTables,
    EnvTables,
    RegistryEventTables,
    DeployReviewTables,
    PlatformUpgradeTables {}
