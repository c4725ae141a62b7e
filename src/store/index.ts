export { migrationProvider, migrations } from "./migrations/index.js";
export type { Database } from "./schema.js";
export {
  isUniqueViolation,
  openStore,
  type Store,
  type StoreEngine,
  type StoreOptions,
  type StoreTransaction,
} from "./store.js";
