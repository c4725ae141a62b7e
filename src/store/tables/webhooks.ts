/** The webhook replay guard: the SHA-256 of every signed body the node accepted. */
export interface WebhookBodiesTable {
  /** 64 lowercase hex; the primary key, so one of two racing inserts wins. */
  digest: string;
  /** ISO 8601. */
  accepted_at: string;
}

export interface WebhookTables {
  webhook_bodies: WebhookBodiesTable;
}
