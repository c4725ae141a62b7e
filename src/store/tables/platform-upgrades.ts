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
  /** The host the upgrader runs on (os.hostname()); its pid means something only there. */
  upgrader_host: string | null;
  /** ISO time the upgrader last wrote, every few seconds while it runs. */
  heartbeat_at: string | null;
  /** JSON: [{role, ok, ms, error?}] in the order the roles were handed over. */
  roles: string;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface PlatformUpgradeTables {
  platform_upgrades: PlatformUpgradesTable;
}
