/**
 * The shapes the UI reads from the node's API (src/node/schemas/ describes them in full). Only the
 * fields the pages use are listed.
 */

export interface RegistryApp {
  uuid: string;
  name: string;
  tenant: string;
  [field: string]: unknown;
}
