import { createHash } from "node:crypto";
import { type FileHandle, mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { isErrno } from "../core/errors.js";
import type { Store } from "../store/index.js";

/**
 * The memory of every signed webhook body the node accepted, by SHA-256 digest. A forge's
 * delivery id is a header outside the signature, so a captured push replayed with a fresh id
 * verifies; its body digest does not change, and that is what is remembered.
 *
 * One small interface, so the digests can move into the node's store (SQL: one table with the
 * digest as primary key, `INSERT … ON CONFLICT DO NOTHING` and the row count for `remember`)
 * without touching the webhook intake.
 */
export interface ReplayGuard {
  /** True when a body with this digest was accepted before. */
  seen(digest: string): Promise<boolean>;
  /**
   * Remembers a digest durably. True when it is new; false when it was already remembered, also
   * when a concurrent caller remembered it first (exactly one of two racing callers gets true).
   * When it cannot be made durable it throws and the digest is not remembered.
   */
  remember(digest: string): Promise<boolean>;
  close(): Promise<void>;
}

/** The hex SHA-256 of a raw request body: what the guard keys on. */
export function bodyDigest(raw: Buffer): string {
  return createHash("sha256").update(raw).digest("hex");
}

const DIGEST = /^[0-9a-f]{64}$/;

/**
 * The guard as an append-only file (`webhook-bodies.log` in the node's data dir, 0600), one hex
 * digest per line, fsync'd before `remember` resolves, so a restarted node still knows every body
 * it acknowledged. A line torn by a crash is skipped at open (it was never acknowledged).
 * 66 bytes per accepted delivery; all digests are held in memory as well.
 */
export class FileReplayGuard implements ReplayGuard {
  readonly #digests: Set<string>;
  readonly #path: string;
  #handle: FileHandle | undefined;
  #chain: Promise<void> = Promise.resolve();

  private constructor(path: string, digests: Set<string>) {
    this.#path = path;
    this.#digests = digests;
  }

  static async open(dataDir: string): Promise<FileReplayGuard> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, "webhook-bodies.log");
    let text = "";
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
    const digests = new Set(text.split("\n").filter((line) => DIGEST.test(line)));
    return new FileReplayGuard(path, digests);
  }

  get path(): string {
    return this.#path;
  }

  async seen(digest: string): Promise<boolean> {
    return this.#digests.has(digest);
  }

  async remember(digest: string): Promise<boolean> {
    if (!DIGEST.test(digest)) throw new Error("a replay digest is 64 lowercase hex characters");
    // Taken before any await, so a concurrent caller with the same digest sees it.
    if (this.#digests.has(digest)) return false;
    this.#digests.add(digest);
    const write = this.#chain.then(async () => {
      this.#handle ??= await open(this.#path, "a", 0o600);
      // A torn earlier line must not swallow this one: each digest starts on its own line.
      await this.#handle.appendFile(`\n${digest}\n`);
      await this.#handle.datasync();
    });
    this.#chain = write.catch(() => {});
    try {
      await write;
    } catch (err) {
      this.#digests.delete(digest);
      throw err;
    }
    return true;
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#handle?.close();
    this.#handle = undefined;
  }
}

/**
 * The guard in the node's store (`webhook_bodies`, digest as primary key), next to the delivery
 * ledger: `INSERT … ON CONFLICT DO NOTHING` and its row count make `remember` atomic across
 * concurrent callers and across nodes sharing one Postgres. A `webhook-bodies.log` left by a node
 * that kept the digests in a file is imported once at open and renamed `.imported`.
 */
export class SqlReplayGuard implements ReplayGuard {
  readonly #store: Store;

  private constructor(store: Store) {
    this.#store = store;
  }

  static async open(store: Store, dataDir?: string): Promise<SqlReplayGuard> {
    const guard = new SqlReplayGuard(store);
    if (dataDir !== undefined) await guard.#importFile(join(dataDir, "webhook-bodies.log"));
    return guard;
  }

  async #importFile(path: string): Promise<void> {
    let lines: AsyncIterable<string>;
    try {
      const handle = await open(path, "r");
      lines = createInterface({ input: handle.createReadStream({ encoding: "utf8" }), crlfDelay: Infinity });
    } catch (err) {
      if (isErrno(err, "ENOENT")) return;
      throw err;
    }
    for await (const line of lines) {
      if (DIGEST.test(line)) await this.remember(line);
    }
    await rename(path, `${path}.imported`);
  }

  async seen(digest: string): Promise<boolean> {
    const row = await this.#store.db
      .selectFrom("webhook_bodies")
      .select("digest")
      .where("digest", "=", digest)
      .executeTakeFirst();
    return row !== undefined;
  }

  async remember(digest: string): Promise<boolean> {
    if (!DIGEST.test(digest)) throw new Error("a replay digest is 64 lowercase hex characters");
    const result = await this.#store.db
      .insertInto("webhook_bodies")
      .values({ digest, accepted_at: new Date().toISOString() })
      .onConflict((oc) => oc.column("digest").doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  async close(): Promise<void> {
    // The store is the node's to close.
  }
}
