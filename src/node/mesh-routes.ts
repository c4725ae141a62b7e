import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import { parsePeerRecord, type RosterCoordinator } from "../mesh/coordinator.js";
import { verifyJoinToken } from "../mesh/join-token.js";
import { type MeshCaller, type MeshCoordinator, visibleTo } from "../mesh/mesh-coordinator.js";
import type { MeshEvent } from "../mesh/wire.js";
import type { NodeKeyCheck } from "./auth.js";
import { callerFirst } from "./caller-first.js";
import {
  deregisterSchema,
  heartbeatSchema,
  meshTopologySchema,
  peersSchema,
  peersStreamSchema,
  registerSchema,
} from "./schemas/mesh.js";

export interface MeshRoutesOptions {
  roster: RosterCoordinator;
  /** The WireGuard mesh; absent when the node has no store (no data dir). */
  mesh: () => { coordinator: MeshCoordinator; joinKey: () => Promise<Buffer> } | undefined;
  keyCheck: NodeKeyCheck;
}

const SSE_KEEPALIVE_MS = 15_000;

/**
 * `/v1/mesh/*`: the roster (supervisors and runners, node key or a `supervisor`-tagged join
 * token) and the WireGuard mesh (a body carrying `wg_public_key`; node key or any join token) on
 * the same paths. Every route authenticates; the join token's claims decide network and tags.
 */
export function registerMeshRoutes(app: FastifyInstance, opts: MeshRoutesOptions): void {
  const { roster, keyCheck } = opts;
  // Handlers take their body types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();

  const mesh = () => {
    const m = opts.mesh();
    if (!m)
      throw new TabbifyError(
        "MESH_UNAVAILABLE",
        "the WireGuard mesh needs the node's store (--data or --database)",
      );
    return m;
  };

  const caller = async (req: FastifyRequest): Promise<MeshCaller> => {
    const header = req.headers.authorization;
    try {
      keyCheck.assert(header);
      return { via: "node-key" };
    } catch (keyErr) {
      const token = bearerToken(header);
      const m = opts.mesh();
      if (!token || !m) throw keyErr;
      return { via: "token", claims: await verifyJoinToken(await m.joinKey(), token) };
    }
  };

  /** The roster's own credential: the node key, or a join token minted for supervisors. */
  const rosterCaller = (who: MeshCaller): void => {
    if (who.via === "token" && !who.claims.tags.includes("supervisor")) {
      throw new TabbifyError(
        "MESH_FORBIDDEN",
        "only a join token tagged supervisor may put peers on the roster",
      );
    }
  };

  // Who calls is known before the body is read; which credential suffices depends on the body.
  const who = callerFirst(caller);
  const isMeshBody = (body: object) => "wg_public_key" in body;

  // Every peer registers and beats every few seconds: at info they would be all an idle node logs.
  typed.post(
    "/v1/mesh/register",
    { schema: registerSchema, onRequest: who.onRequest, logLevel: "warn" },
    async (req) => {
      if (isMeshBody(req.body))
        return mesh().coordinator.register(req.body, who.caller(req), req.socket.remoteAddress);
      rosterCaller(who.caller(req));
      return roster.register(parsePeerRecord(req.body));
    },
  );

  typed.post(
    "/v1/mesh/heartbeat",
    { schema: heartbeatSchema, onRequest: who.onRequest, logLevel: "warn" },
    async (req) => {
      if (isMeshBody(req.body)) return mesh().coordinator.heartbeat(req.body, who.caller(req));
      rosterCaller(who.caller(req));
      return roster.heartbeat(parsePeerRecord(req.body));
    },
  );

  typed.post("/v1/mesh/deregister", { schema: deregisterSchema, onRequest: who.onRequest }, async (req) => {
    const peerId = req.body.peer_id;
    const m = opts.mesh();
    if (m?.coordinator.knows(peerId)) {
      m.coordinator.deregister(peerId, who.caller(req));
      return {};
    }
    rosterCaller(who.caller(req));
    roster.deregister(peerId);
    return {};
  });

  typed.get("/v1/mesh/peers", { schema: peersSchema }, async (req) => {
    const who = await caller(req);
    // The node key also sees the roster's supervisors and runners, as before.
    const peers = opts.mesh()?.coordinator.peersVisibleTo(who) ?? [];
    return who.via === "node-key" ? { peers: [...roster.peers(), ...peers] } : { peers };
  });

  typed.get("/v1/mesh/topology", { schema: meshTopologySchema }, async (req) => {
    return mesh().coordinator.topology(await caller(req));
  });

  typed.get("/v1/mesh/peers/stream", { schema: peersStreamSchema }, async (req, reply) => {
    const who = await caller(req);
    const coordinator = mesh().coordinator;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const send = (event: string, data: unknown) =>
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    send("snapshot", { peers: coordinator.peersVisibleTo(who), peers_version: coordinator.peersVersion });
    const stop = coordinator.follow((e: MeshEvent) => {
      if (visibleTo(who, e.peer)) send(e.type, { peer: e.peer, peers_version: coordinator.peersVersion });
    });
    const keepalive = setInterval(() => res.write(": keepalive\n\n"), SSE_KEEPALIVE_MS);
    const end = () => {
      clearInterval(keepalive);
      stop();
    };
    req.raw.on("close", end);
    res.on("close", end);
  });
}
