import { chmod, mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import type { Logger } from "../core/log.js";
import { openStore, type Store } from "../store/index.js";
import { importJsonLines } from "./jsonl-import.js";

/** The embedded store's file under the node's data dir. */
export const NODE_DB_FILE = "node.db";

export interface NodeStoreOptions {
  /** The node's data dir (0700): the SQLite file lives here, and earlier JSON lines are read from it. */
  dataDir: string;
  /** `postgres://…` when several nodes share state; absent ⇒ SQLite at `<dataDir>/node.db`. */
  databaseUrl?: string;
  logger: Logger;
}

/** Who runs the deploys started by this node: its host and data dir. */
export function nodeOwner(dataDir: string): string {
  return `${hostname()}:${resolve(dataDir)}`;
}

/**
 * Opens the node's store (migrated to the latest schema) and imports the data dir's JSON lines
 * the first time.
 */
export async function openNodeStore(opts: NodeStoreOptions): Promise<Store> {
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  await chmod(opts.dataDir, 0o700);
  const store = opts.databaseUrl
    ? await openStore({ engine: "postgres", url: opts.databaseUrl })
    : await openStore({ engine: "sqlite", file: join(opts.dataDir, NODE_DB_FILE) });
  try {
    const imported = await importJsonLines(store, opts.dataDir, nodeOwner(opts.dataDir));
    if (imported) opts.logger.info("imported the data dir's JSON lines into the store", { ...imported });
  } catch (err) {
    await store.close();
    throw err;
  }
  opts.logger.info("store open", { engine: store.engine, where: store.describe() });
  return store;
}
