import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { eventsMediaType } from "../registry/notifications.js";
import type { Store } from "../store/index.js";
import type { AuditLog } from "./audit-log.js";
import type { NodeKeyCheck } from "./auth.js";
import { registryEventsSchema } from "./schemas/operations.js";

/**
 * `POST /api/v1/registry/events`: the registry's notifications (`--notify`), in Distribution's
 * envelope. Who may call: the holder of the registry events token (TABBIFY_REGISTRY_EVENTS_TOKEN,
 * else the node key), checked in constant time. Each push and delete is appended to the audit
 * chain with the token's subject as actor (`registry.push` / `registry.delete`, subject
 * `image:<repository>@<digest>`); other actions (pulls, mounts) are acknowledged and dropped. An
 * event id already recorded is skipped, so the registry's retries never duplicate a row.
 */

export interface RegistryEventsRoutesOptions {
  store: Store;
  audit: AuditLog;
  keyCheck: NodeKeyCheck;
  logger: Logger;
}

const maxEnvelopeBytes = 4 * 1024 * 1024;
const digestPattern = /^sha256:[0-9a-f]{64}$/;
const repositoryPattern =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

interface AuditableEvent {
  id: string;
  action: "push" | "delete";
  actor: string;
  repository: string;
  digest: string;
  tag?: string;
  mediaType?: string;
  size?: number;
  timestamp?: string;
  source?: string;
}

function str(v: unknown, max: number): string | undefined {
  return typeof v === "string" && v.length > 0 && v.length <= max ? v : undefined;
}

/** Validates one event; undefined for an action that is not audited. Throws on a malformed one. */
export function auditableEvent(raw: unknown): AuditableEvent | undefined {
  if (typeof raw !== "object" || raw === null)
    throw new TabbifyError("BAD_REQUEST", "an event must be an object");
  const e = raw as Record<string, unknown>;
  const target = (e.target ?? {}) as Record<string, unknown>;
  const id = str(e.id, 200);
  if (!id) throw new TabbifyError("BAD_REQUEST", "every event needs an id");
  if (e.action !== "push" && e.action !== "delete") return undefined;
  const digest = str(target.digest, 100);
  const repository = str(target.repository, 255);
  if (!digest || !digestPattern.test(digest) || !repository || !repositoryPattern.test(repository)) {
    throw new TabbifyError(
      "BAD_REQUEST",
      `event ${id.slice(0, 80)}: target needs a sha256 digest and a repository`,
    );
  }
  const actor = str((e.actor as Record<string, unknown> | undefined)?.name, 200) ?? "anonymous";
  const out: AuditableEvent = { id, action: e.action, actor, repository, digest };
  const tag = str(target.tag, 128);
  if (tag) out.tag = tag;
  const mediaType = str(target.mediaType, 255);
  if (mediaType) out.mediaType = mediaType;
  if (typeof target.size === "number" && Number.isSafeInteger(target.size)) out.size = target.size;
  const timestamp = str(e.timestamp, 64);
  if (timestamp) out.timestamp = timestamp;
  const source = str((e.source as Record<string, unknown> | undefined)?.instanceID, 100);
  if (source) out.source = source;
  return out;
}

export function registerRegistryEventsRoutes(app: FastifyInstance, opts: RegistryEventsRoutesOptions): void {
  app.register(async (untyped) => {
    // The handler takes its body type from the route schema; each event is the parser's to check.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    scope.addContentTypeParser(
      eventsMediaType,
      { parseAs: "string", bodyLimit: maxEnvelopeBytes },
      (_req, body, done) => {
        try {
          done(null, JSON.parse(body as string));
        } catch {
          done(new TabbifyError("BAD_REQUEST", "the envelope is not JSON"), undefined);
        }
      },
    );
    scope.post(
      "/api/v1/registry/events",
      {
        bodyLimit: maxEnvelopeBytes,
        schema: registryEventsSchema,
        onRequest: async (req) => opts.keyCheck.assert(req.headers.authorization),
      },
      async (req) => {
        // Every event is checked before any is recorded: a bad batch changes nothing.
        const events = req.body.events.map(auditableEvent);
        let recorded = 0;
        let duplicates = 0;
        for (const event of events) {
          if (!event) continue;
          const added = await opts.store.transaction(async (trx) => {
            await opts.store.serialize(trx, "registry-events");
            const seen = await trx
              .selectFrom("registry_events")
              .select("id")
              .where("id", "=", event.id)
              .executeTakeFirst();
            if (seen) return false;
            const { id, action, actor, repository, digest, ...detail } = event;
            const audited = await opts.audit.append(trx, {
              actor,
              action: `registry.${action}`,
              subject: `image:${repository}@${digest}`,
              after: { event_id: id, repository, digest, ...detail },
            });
            await trx
              .insertInto("registry_events")
              .values({ id, received_at: new Date().toISOString(), audit_seq: audited.seq })
              .execute();
            return true;
          });
          if (added) recorded += 1;
          else duplicates += 1;
        }
        if (recorded > 0) opts.logger.info("registry events audited", { recorded, duplicates });
        return { recorded, duplicates, ignored: events.filter((e) => e === undefined).length };
      },
    );
  });
}
