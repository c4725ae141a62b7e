/** Platform upgrades: one row per `tabbify upgrade` (or rollback), written by its upgrader. */
export interface PlatformUpgradesTable {
  id: string;
  /** upgrade | rollback */
  kind: string;
  /** in_progress | completed | failed */
  status: string;
  /** queued | unpack | supervisor | registry | auth | node | commit | done */
  phase: string;
  from_version: string;
  to_version: string | null;
  /** The transient upgrader's pid while it runs. */
  upgrader_pid: number | null;
  /** JSON: [{role, ok, ms, error?}] in the order the roles were handed over. */
  roles: string;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface PlatformUpgradeTables {
  platform_upgrades: PlatformUpgradesTable;
}
