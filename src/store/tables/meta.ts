/** Facts about the store itself, e.g. that a data dir's JSON lines were imported. */
export interface StoreMetaTable {
  key: string;
  /** JSON. */
  value: string;
  updated_at: string;
}

export interface MetaTables {
  store_meta: StoreMetaTable;
}
