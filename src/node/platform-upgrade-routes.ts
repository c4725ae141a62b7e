/**
 * The platform upgrade API, node key only:
 *
 *   POST /api/v1/platform/upgrade        body: the release tarball (application/octet-stream),
 *                                        or {"rollback": true} (application/json)
 *                                        → 202 {id, status: "in_progress"}
 *   GET  /api/v1/platform/upgrades/:id   → the upgrade as the store has it
 *
 * The node only files the request: it stores the tarball and a row, and asks `tabbify up` (over
 * the IPC channel `up` gave it) to start a transient upgrader, which does and records the rest.
 * A node not started by `up` has no one to ask and answers 409.
 */

import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { Store } from "../store/index.js";
import { createUpgrade, finishUpgrade, openUpgrades, readUpgrade } from "../upgrade/records.js";
import type { UpgradeRequest } from "../upgrade/up-control.js";
import { acceptTarballBodies, saveTarball } from "../upgrade/upload.js";
import type { NodeKeyCheck } from "./auth.js";
import { type UpgradeRecord, upgradeSchemas } from "./schemas/operations.js";
import { nodeVersion } from "./version.js";

export interface PlatformUpgradeRouteOptions {
  store: Store;
  keyCheck: NodeKeyCheck;
  dataDir: string;
  /** Sends a request to `tabbify up`; undefined when the node does not run under `up`. */
  channel: ((request: UpgradeRequest) => boolean) | undefined;
}

export function registerPlatformUpgradeRoutes(app: FastifyInstance, opts: PlatformUpgradeRouteOptions): void {
  const incoming = join(resolve(opts.dataDir), "platform-upgrades");
  app.register(async (untyped) => {
    // Handlers take their params, query and body types from the route schemas.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    scope.addHook("onRequest", async (req) => {
      opts.keyCheck.assert(req.headers.authorization);
    });
    // The tarball streams to disk; it is never held in memory.
    acceptTarballBodies(scope);

    scope.post("/api/v1/platform/upgrade", { schema: upgradeSchemas.start }, async (req, reply) => {
      const channel = opts.channel;
      if (!channel) {
        throw new TabbifyError(
          "UPGRADE_UNAVAILABLE",
          "this node does not run under `tabbify up`, which performs platform upgrades",
        );
      }
      const open = await openUpgrades(opts.store, nodeVersion);
      if (open.length > 0)
        throw new TabbifyError("UPGRADE_IN_PROGRESS", `upgrade ${open[0]!.id} is still in progress`);
      const id = randomUUID();
      const isJson = (req.headers["content-type"] ?? "").startsWith("application/json");
      const body = isJson ? (req.body as { restart_runners?: boolean }) : undefined;
      const restartRunners =
        body?.restart_runners === true || ["1", "true"].includes(req.query.restart_runners ?? "");
      // The schema let a JSON body through only as {"rollback": true}.
      const request: UpgradeRequest = isJson
        ? { type: "platform-upgrade", id, rollback: true }
        : { type: "platform-upgrade", id, tarball: await saveTarball(req.body, incoming, id) };
      if (restartRunners) request.restart_runners = true;
      await createUpgrade(opts.store, {
        id,
        kind: request.rollback ? "rollback" : "upgrade",
        from_version: nodeVersion,
      });
      if (!channel(request)) {
        await finishUpgrade(opts.store, id, "failed", "tabbify up did not take the request");
        if (request.tarball) await rm(request.tarball, { force: true });
        throw new TabbifyError("UPGRADE_UNAVAILABLE", "tabbify up did not take the request");
      }
      return reply.code(202).send({ id, status: "in_progress" });
    });

    scope.get("/api/v1/platform/upgrades/:id", { schema: upgradeSchemas.status }, async (req) => {
      if (!/^[0-9a-f-]{36}$/.test(req.params.id))
        throw new TabbifyError("UPGRADE_NOT_FOUND", "no such upgrade");
      const upgrade = await readUpgrade(opts.store, req.params.id, nodeVersion);
      if (!upgrade) throw new TabbifyError("UPGRADE_NOT_FOUND", "no such upgrade");
      // The store's record is what the schema documents (and serializes): a drift fails tsc.
      return upgrade satisfies Static<typeof UpgradeRecord>;
    });
  });
  // Closes upgrades a gone upgrader left open, so the store never says "in progress" forever.
  void openUpgrades(opts.store, nodeVersion).catch(() => {});
}
