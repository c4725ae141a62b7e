/**
 * The deploy pipeline's tables. Timestamps are ISO 8601 text (UTC, `Date#toISOString`), JSON is
 * text: both compare and round-trip the same on SQLite and Postgres.
 */

export interface DeploysTable {
  id: string;
  /** running | succeeded | failed */
  status: string;
  created_at: string;
  finished_at: string | null;
  app_uuid: string | null;
  image_ref: string | null;
  digest: string | null;
  /** JSON: the (redacted) DeployRequest. */
  request: string;
  /** JSON: TargetResult[]. */
  results: string;
  /** JSON: {code, message, step} when the deploy failed as a whole. */
  error: string | null;
  /**
   * The node running the deploy (its executor lives in that process). A node that restarts closes
   * only its own running deploys, not those of other nodes sharing a Postgres store.
   */
  owner: string;
}

export interface DeployEventsTable {
  deploy_id: string;
  /** 1, 2, 3… per deploy. */
  seq: number;
  ts: string;
  step: string;
  type: string;
  message: string | null;
  /** JSON object. */
  data: string | null;
}

export interface WebhookDeliveriesTable {
  delivery_id: string;
  /** When the delivery id was claimed (first seen); null for a note without a claim. */
  claimed_at: string | null;
  /** JSON: what became of the delivery (the DeliveryNote), once known. */
  note: string | null;
  noted_at: string | null;
}

export interface DeployTables {
  deploys: DeploysTable;
  deploy_events: DeployEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
}
