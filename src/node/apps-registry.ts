import { validate as validateUuid } from "uuid";
import { TabbifyError } from "../core/errors.js";
import { isUniqueViolation, type Store, type StoreTransaction } from "../store/index.js";
import { applyMergePatch, type Diff, diff } from "./apps-diff.js";
import { AppLocks } from "./apps-lock.js";
import { type App, appInvalid, normalizeApp, type ServerPolicy } from "./apps-schema.js";
import type { AuditLog } from "./audit-log.js";

/**
 * The app registry: the one writer of the `apps` table. Each mutation takes the app's lock,
 * reads the current document inside its transaction, validates the whole result, writes it and
 * appends the audit event in that same transaction. A dry run stops before the write and the
 * audit: it answers the diff and touches nothing.
 */

/** Who is asking: the audit actor, and the tenant a tenant token is confined to. */
export interface Caller {
  actor: string;
  /** Set for tenant tokens: they see and change only this tenant's apps. */
  tenant?: string;
}

export interface MutationResult {
  /** 201 when an app came to be, else 200. */
  status: 200 | 201;
  dry_run: boolean;
  /** False when the document already said this: nothing written, nothing audited. */
  changed: boolean;
  diff: Diff<App>;
}

export interface AppRegistryOptions {
  store: Store;
  audit: AuditLog;
  servers: ServerPolicy;
  lockTimeoutMs?: number;
  now?: () => Date;
}

export function appSubject(name: string): string {
  return `app:${name}`;
}

function notFound(ref: string): TabbifyError {
  return new TabbifyError("APP_NOT_FOUND", `app ${ref.slice(0, 64)} is not in the registry`);
}

export class AppRegistry {
  readonly #store: Store;
  readonly #audit: AuditLog;
  readonly #servers: ServerPolicy;
  readonly #locks: AppLocks;
  readonly #now: () => Date;

  constructor(opts: AppRegistryOptions) {
    this.#store = opts.store;
    this.#audit = opts.audit;
    this.#servers = opts.servers;
    this.#locks = new AppLocks(opts.lockTimeoutMs ?? 5_000);
    this.#now = opts.now ?? (() => new Date());
  }

  async list(caller: Caller): Promise<App[]> {
    let query = this.#store.db.selectFrom("apps").select("doc").orderBy("name", "asc");
    if (caller.tenant !== undefined) query = query.where("tenant", "=", caller.tenant);
    return (await query.execute()).map((r) => JSON.parse(r.doc) as App);
  }

  async get(caller: Caller, ref: string): Promise<App> {
    const app = await this.#find(this.#store.db, ref);
    if (!app || !visible(caller, app)) throw notFound(ref);
    return app;
  }

  /** uuid → name of every registered app, for views that list runners by uuid. */
  async names(): Promise<Map<string, string>> {
    const rows = await this.#store.db.selectFrom("apps").select(["uuid", "name"]).execute();
    return new Map(rows.map((r) => [r.uuid, r.name]));
  }

  /** Looks an app up by uuid, for the node's own bookkeeping (no caller scoping). */
  async byUuid(uuid: string): Promise<App | undefined> {
    return this.#find(this.#store.db, uuid);
  }

  put(caller: Caller, ref: string, body: unknown, dryRun: boolean): Promise<MutationResult> {
    return this.#mutate(caller, ref, "app.replace", dryRun, (existing) => {
      const input = this.#withCallerTenant(caller, body);
      return this.#normalize(input, existing, ref);
    });
  }

  patch(caller: Caller, ref: string, patch: unknown, dryRun: boolean): Promise<MutationResult> {
    if (typeof patch !== "object" || patch === null || Array.isArray(patch)) {
      throw appInvalid("body", "a merge patch must be a JSON object");
    }
    return this.#mutate(caller, ref, "app.update", dryRun, (existing) => {
      if (!existing) throw notFound(ref);
      const { created_at: _c, updated_at: _u, ...current } = existing;
      return this.#normalize(applyMergePatch(current, patch), existing, ref);
    });
  }

  remove(caller: Caller, ref: string, dryRun: boolean): Promise<MutationResult> {
    return this.#mutate(caller, ref, "app.delete", dryRun, (existing) => {
      if (!existing) throw notFound(ref);
      return null;
    });
  }

  /**
   * Registers an app on first sight (a push, a `POST /v1/deploy`, a runner on the roster), audited
   * as created by `actor`. Returns the entry, new or existing; never changes an existing one.
   */
  async ensure(
    actor: string,
    seen: { uuid: string; tenant: string; repo_url?: string; name?: string },
  ): Promise<App> {
    const known = await this.byUuid(seen.uuid);
    if (known) return known;
    const base = nameFor(seen);
    for (const name of [base, `${base.slice(0, 54)}-${seen.uuid.replaceAll("-", "").slice(-8)}`]) {
      const taken = await this.#find(this.#store.db, name);
      if (taken) {
        if (taken.uuid === seen.uuid) return taken;
        continue;
      }
      const body: Record<string, unknown> = { name, uuid: seen.uuid, tenant: seen.tenant };
      if (seen.repo_url !== undefined) body.repo_url = seen.repo_url;
      try {
        await this.#mutate({ actor }, name, "app.create", false, (existing) => {
          if (existing) throw new TabbifyError("APP_EXISTS", `app ${name} appeared meanwhile`);
          return this.#normalize(body, undefined, name);
        });
      } catch (err) {
        if (err instanceof TabbifyError && err.code === "APP_EXISTS") continue;
        throw err;
      }
      const created = await this.byUuid(seen.uuid);
      if (created) return created;
    }
    const raced = await this.byUuid(seen.uuid);
    if (raced) return raced;
    throw new TabbifyError("APP_INVALID", `no free registry name for app ${seen.uuid}`);
  }

  /**
   * Fills an empty registry from a seed list, once: a marker in the store records that seeding
   * happened, so later boots (or an emptied registry) never apply a changed file over it.
   * Returns how many apps were created (0 when seeding is not due).
   */
  async seedOnce(apps: unknown[]): Promise<number> {
    return this.#store.transaction(async (trx) => {
      await this.#store.serialize(trx, "apps-seed");
      const marker = await trx
        .selectFrom("store_meta")
        .select("key")
        .where("key", "=", SEED_MARKER)
        .executeTakeFirst();
      if (marker) return 0;
      const now = this.#now().toISOString();
      const any = await trx.selectFrom("apps").select("uuid").limit(1).executeTakeFirst();
      let created = 0;
      if (!any) {
        const seen = new Set<string>();
        for (const [i, raw] of apps.entries()) {
          let app: App;
          try {
            app = this.#normalize(raw, undefined, undefined);
          } catch (err) {
            if (err instanceof TabbifyError)
              throw new TabbifyError(err.code, `seed apps[${i}]: ${err.message}`, err.detail);
            throw err;
          }
          if (seen.has(app.name)) throw appInvalid(`apps[${i}].name`, `"${app.name}" is seeded twice`);
          seen.add(app.name);
          await this.#write(trx, undefined, app);
          await this.#audit.append(trx, {
            actor: "system",
            action: "app.create",
            subject: appSubject(app.name),
            after: app,
          });
          created += 1;
        }
      }
      const value = JSON.stringify({ seeded_at: now, apps: created });
      await trx.insertInto("store_meta").values({ key: SEED_MARKER, value, updated_at: now }).execute();
      return created;
    });
  }

  #withCallerTenant(caller: Caller, body: unknown): unknown {
    if (caller.tenant === undefined || typeof body !== "object" || body === null || Array.isArray(body))
      return body;
    const input = body as Record<string, unknown>;
    return input.tenant === undefined ? { ...input, tenant: caller.tenant } : input;
  }

  #normalize(input: unknown, existing: App | undefined, ref: string | undefined): App {
    const urlName = ref !== undefined && !validateUuid(ref) ? ref : undefined;
    const servers: ServerPolicy = {
      // Servers an app already lists stay acceptable when they leave the roster for a while.
      allowed: () => new Set([...this.#servers.allowed(), ...(existing?.servers ?? [])]),
    };
    const ctx = {
      servers,
      now: this.#now(),
      ...(existing ? { existing } : {}),
      ...(urlName ? { urlName } : {}),
    };
    return normalizeApp(input, ctx);
  }

  async #mutate(
    caller: Caller,
    ref: string,
    action: "app.replace" | "app.update" | "app.delete" | "app.create",
    dryRun: boolean,
    next: (existing: App | undefined) => App | null,
  ): Promise<MutationResult> {
    // The lock is per name; a uuid is turned into the name of the app it belongs to first.
    const key = validateUuid(ref)
      ? ((await this.#find(this.#store.db, ref))?.name ?? ref.toLowerCase())
      : ref;
    return this.#locks.with(key, { actor: caller.actor, action }, async () => {
      const run = async (trx: StoreTransaction | undefined): Promise<MutationResult> => {
        if (trx) await this.#store.serialize(trx, `app:${key}`);
        const existing = await this.#find(trx ?? this.#store.db, ref);
        if (existing && !visible(caller, existing)) throw notFound(ref);
        const after = next(existing);
        if (after && caller.tenant !== undefined && after.tenant !== caller.tenant) {
          throw new TabbifyError(
            "FORBIDDEN",
            `a token for tenant ${caller.tenant} cannot manage apps of tenant ${after.tenant}`,
          );
        }
        if (after && !existing && trx) {
          const owner = await trx
            .selectFrom("apps")
            .select("name")
            .where("uuid", "=", after.uuid)
            .executeTakeFirst();
          if (owner) throw appInvalid("uuid", `already belongs to app "${owner.name}"`);
        }
        const d = diff(existing ?? null, after);
        const changed = d.changes.length > 0;
        const result: MutationResult = {
          status: !existing && after ? 201 : 200,
          dry_run: dryRun,
          changed,
          diff: d,
        };
        if (!trx || !changed) {
          // Nothing to write: the document already says this (a re-PUT keeps its updated_at).
          if (existing && after) result.diff.after = existing;
          return result;
        }
        await this.#write(trx, existing, after);
        const verb = !existing ? "app.create" : !after ? "app.delete" : action;
        const entry: Parameters<AuditLog["append"]>[1] = {
          actor: caller.actor,
          action: verb,
          subject: appSubject(key),
        };
        if (existing) entry.before = existing;
        if (after) entry.after = after;
        await this.#audit.append(trx, entry);
        return result;
      };
      // A dry run reads outside any transaction, so it cannot write by accident.
      if (dryRun) return run(undefined);
      try {
        return await this.#store.transaction((trx) => run(trx));
      } catch (err) {
        // Another node (or a request addressing the same app by its other key) won the race.
        if (isUniqueViolation(err)) {
          throw new TabbifyError(
            "APP_CONFLICT",
            `app ${key.slice(0, 64)} was created concurrently; read it and retry`,
          );
        }
        throw err;
      }
    });
  }

  async #write(trx: StoreTransaction, existing: App | undefined, after: App | null): Promise<void> {
    if (!after) {
      await trx.deleteFrom("apps").where("uuid", "=", existing!.uuid).execute();
      // Its env vars and secrets (every environment) go with it, in the same transaction: an app
      // created later under the same name or uuid starts with none of them.
      await trx.deleteFrom("app_env").where("app_uuid", "=", existing!.uuid).execute();
      return;
    }
    const row = {
      uuid: after.uuid,
      name: after.name,
      tenant: after.tenant,
      doc: JSON.stringify(after),
      created_at: after.created_at,
      updated_at: after.updated_at,
    };
    if (existing) await trx.updateTable("apps").set(row).where("uuid", "=", existing.uuid).execute();
    else await trx.insertInto("apps").values(row).execute();
  }

  async #find(db: Store["db"] | StoreTransaction, ref: string): Promise<App | undefined> {
    const column = validateUuid(ref) ? "uuid" : "name";
    const value = column === "uuid" ? ref.toLowerCase() : ref;
    const row = await db.selectFrom("apps").select("doc").where(column, "=", value).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as App) : undefined;
  }
}

const SEED_MARKER = "apps.seeded";

function visible(caller: Caller, app: App): boolean {
  return caller.tenant === undefined || caller.tenant === app.tenant;
}

/** A DNS-label name from what a first sighting offers: the repo's last path segment, else the uuid. */
function nameFor(seen: { uuid: string; repo_url?: string; name?: string }): string {
  const fromRepo = seen.repo_url
    ?.replace(/\/+$/, "")
    .replace(/\.git$/, "")
    .split(/[/:]/)
    .pop();
  const raw = (seen.name ?? fromRepo ?? "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  if (raw !== "" && !validateUuid(raw)) return raw;
  return `app-${seen.uuid.replaceAll("-", "").slice(0, 12)}`;
}
