import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { Store } from "../store/index.js";

/**
 * App env vars and secrets at rest: AES-256-GCM under a 32-byte key in `<data>/env.key` (0600,
 * created once), one row per (app, environment, name). The AAD binds each value to its row, so a
 * sealed value copied to another app or name does not open. Values leave the vault only for the
 * app's own workloads (through their supervisor) and for `--reveal` with the node key.
 */

export const ENV_KEY_FILE = "env.key";
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Set by the runtime itself, so an app cannot take them over. */
const RESERVED = new Set(["PORT", "HOST", "PATH", "HOME", "NODE_OPTIONS", "LD_PRELOAD", "LD_LIBRARY_PATH"]);
const MAX_VALUE_BYTES = 32 * 1024;
const MAX_VARS = 200;

export async function loadOrCreateEnvKey(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, ENV_KEY_FILE);
  for (;;) {
    try {
      const key = Buffer.from((await readFile(path, "utf8")).trim(), "base64url");
      if (key.length !== 32) throw new TabbifyError("ENV_KEY_INVALID", `${path} does not hold a 32-byte key`);
      return key;
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
    try {
      const handle = await open(path, "wx", 0o600);
      try {
        await handle.writeFile(`${randomBytes(32).toString("base64url")}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      // Another process created it first: read theirs.
      if (!isErrno(err, "EEXIST")) throw err;
    }
  }
}

/** Why a name cannot be an env var, or undefined. */
export function envNameProblem(name: string): string | undefined {
  if (!NAME.test(name))
    return `"${name.slice(0, 40)}" is not an env var name (letters, digits, _; not starting with a digit)`;
  if (RESERVED.has(name) || name.startsWith("TABBIFY_"))
    return `${name} is set by Tabbify itself and cannot be overridden`;
  return undefined;
}

function aad(uuid: string, environment: string, name: string): Buffer {
  return Buffer.from(`tabbify-env/v1\0${uuid}\0${environment}\0${name}`, "utf8");
}

export class EnvVault {
  readonly #store: Store;
  readonly #key: Buffer;

  constructor(store: Store, key: Buffer) {
    this.#store = store;
    this.#key = key;
  }

  seal(uuid: string, environment: string, name: string, value: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(aad(uuid, environment, name));
    const body = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return ["v1", iv, body, cipher.getAuthTag()]
      .map((p) => (typeof p === "string" ? p : p.toString("base64url")))
      .join(".");
  }

  open(uuid: string, environment: string, name: string, sealed: string): string {
    const [version, iv, body, tag] = sealed.split(".");
    if (version !== "v1" || !iv || body === undefined || !tag) {
      throw new TabbifyError(
        "ENV_UNREADABLE",
        `the stored value of ${name} is not in a format this node reads`,
      );
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, Buffer.from(iv, "base64url"));
      decipher.setAAD(aad(uuid, environment, name));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString(
        "utf8",
      );
    } catch {
      throw new TabbifyError(
        "ENV_UNREADABLE",
        `the stored value of ${name} does not open with this node's env key (${ENV_KEY_FILE} changed?)`,
      );
    }
  }

  /** Names (and when they changed) of one environment, sorted. */
  async names(uuid: string, environment: string): Promise<Array<{ name: string; updated_at: string }>> {
    return this.#store.db
      .selectFrom("app_env")
      .select(["name", "updated_at"])
      .where("app_uuid", "=", uuid)
      .where("environment", "=", environment)
      .orderBy("name")
      .execute();
  }

  /** Every value of one environment, opened: for the app's workloads and `--reveal` only. */
  async values(uuid: string, environment: string): Promise<Record<string, string>> {
    const rows = await this.#store.db
      .selectFrom("app_env")
      .select(["name", "sealed"])
      .where("app_uuid", "=", uuid)
      .where("environment", "=", environment)
      .orderBy("name")
      .execute();
    const out: Record<string, string> = {};
    for (const row of rows) out[row.name] = this.open(uuid, environment, row.name, row.sealed);
    return out;
  }

  /**
   * Sets and unsets in one transaction; returns which names changed. Checks every name and value
   * first, so a bad one changes nothing.
   */
  async change(
    uuid: string,
    environment: string,
    set: Record<string, string>,
    unset: readonly string[],
  ): Promise<{ set: string[]; unset: string[] }> {
    for (const name of [...Object.keys(set), ...unset]) {
      const problem = envNameProblem(name);
      if (problem) throw new TabbifyError("ENV_INVALID", problem);
    }
    for (const [name, value] of Object.entries(set)) {
      if (typeof value !== "string")
        throw new TabbifyError("ENV_INVALID", `the value of ${name} must be a string`);
      if (Buffer.byteLength(value) > MAX_VALUE_BYTES || value.includes("\0"))
        throw new TabbifyError("ENV_INVALID", `the value of ${name} is over 32 KiB or holds a NUL byte`);
    }
    const now = new Date().toISOString();
    return this.#store.transaction(async (trx) => {
      const removed: string[] = [];
      for (const name of unset) {
        const r = await trx
          .deleteFrom("app_env")
          .where("app_uuid", "=", uuid)
          .where("environment", "=", environment)
          .where("name", "=", name)
          .executeTakeFirst();
        if (Number(r.numDeletedRows) > 0) removed.push(name);
      }
      for (const [name, value] of Object.entries(set)) {
        const sealed = this.seal(uuid, environment, name, value);
        await trx
          .insertInto("app_env")
          .values({ app_uuid: uuid, environment, name, sealed, updated_at: now })
          .onConflict((oc) =>
            oc.columns(["app_uuid", "environment", "name"]).doUpdateSet({ sealed, updated_at: now }),
          )
          .execute();
      }
      const count = await trx
        .selectFrom("app_env")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("app_uuid", "=", uuid)
        .where("environment", "=", environment)
        .executeTakeFirstOrThrow();
      if (Number(count.n) > MAX_VARS)
        throw new TabbifyError("ENV_INVALID", `an environment holds at most ${MAX_VARS} variables`);
      return { set: Object.keys(set).sort(), unset: removed.sort() };
    });
  }

  /** Forgets every value of the app (it left the registry). */
  async forget(uuid: string): Promise<void> {
    await this.#store.db.deleteFrom("app_env").where("app_uuid", "=", uuid).execute();
  }
}
