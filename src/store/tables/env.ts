/** One env var of one app environment; `sealed` is AES-256-GCM (see src/node/env-vault.ts). */
export interface AppEnvTable {
  app_uuid: string;
  environment: string;
  name: string;
  /** `v1.<iv b64url>.<ciphertext b64url>.<tag b64url>`; the AAD binds it to uuid, environment and name. */
  sealed: string;
  updated_at: string;
}

export interface EnvTables {
  app_env: AppEnvTable;
}
