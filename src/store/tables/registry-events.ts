/** A registry notification event the node appended to the audit chain (by event id). */
export interface RegistryEventsTable {
  /** The event's `id` as the registry sent it; the primary key. */
  id: string;
  /** ISO 8601. */
  received_at: string;
  /** The audit event it became. */
  audit_seq: number;
}

export interface RegistryEventTables {
  registry_events: RegistryEventsTable;
}
