/**
 * The app registry and the audit chain. JSON is text, timestamps ISO 8601 text, as elsewhere.
 */

export interface AppsTable {
  uuid: string;
  /** Unique: the API addresses an app by name or uuid. */
  name: string;
  tenant: string;
  /** JSON: the whole app document as the API shows it. */
  doc: string;
  created_at: string;
  updated_at: string;
}

export interface AuditEventsTable {
  /** 1, 2, 3… with no gaps; the primary key, so two appends can never share a seq. */
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  /** JSON, or NULL when the event has no `before` member. */
  before: string | null;
  /** JSON, or NULL when the event has no `after` member. */
  after: string | null;
  prev_hash: string;
  event_hash: string;
}

export interface AppTables {
  apps: AppsTable;
  audit_events: AuditEventsTable;
}
