import { mkdir, mkdtemp } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import {
  APP_PORT,
  appAddress,
  deriveAppUla,
  hostPort,
  type MeshMode,
  parseAppUuid,
} from "../core/address.js";
import { describeApi, schemaAjv, schemaFailure } from "../core/api-docs.js";
import type { Logger, LogLevel } from "../core/log.js";
import { httpLogger, silentLogger } from "../core/log.js";
import { freeLoopbackPort } from "../core/net.js";
import { buildInfo, type ReadyChecks, registerProbes } from "../core/probes.js";
import type { RepoUrlPolicy } from "../core/repo-url.js";
import { sleep } from "../core/sleep.js";
import { registerDashboard } from "../dashboard/index.js";
import { type EdgeStatus, edgeReadiness, ProxyEdge } from "../dataplane/edge.js";
import { type EdgeRoute, engineFor } from "../dataplane/engines.js";
import { MeshAddressBook } from "../mesh/address-book.js";
import { RosterCoordinator } from "../mesh/coordinator.js";
import { MeshCoordinator } from "../mesh/mesh-coordinator.js";
import type { SignaturePolicy } from "../pipeline/deps.js";
import type { RegistryAccess } from "../pipeline/executor.js";
import type { HostCredentials } from "../pipeline/git-credentials.js";
import { RegistryClient } from "../registry/client.js";
import type { Store } from "../store/index.js";
import { listenOptions } from "../upgrade/listener-handoff.js";
import { registerAppEnvRoutes } from "./app-env-routes.js";
import { registerAppHistoryRoutes } from "./apps-history-routes.js";
import { CallerResolver } from "./apps-identity.js";
import { registerAppLogsRoutes } from "./apps-logs-routes.js";
import { type AttachedRegistry, attachRegistry, type NodeRegistryOptions } from "./apps-node.js";
import { registerAppOpsRoutes } from "./apps-ops-routes.js";
import { registerAuditRoutes } from "./audit-routes.js";
import { NodeKeyCheck } from "./auth.js";
import { attachContractDeploys } from "./contract-deploys.js";
import { registerDeployRoutes } from "./deploy-routes.js";
import { type DeviceLoginOptions, registerDeviceLoginRoutes } from "./device-login-routes.js";
import { nodeErrorStatus, toNodeError } from "./errors.js";
import { importLocalRepo, registerGitRoutes } from "./git-push.js";
import { hostLost, watchLateHosts } from "./host-lost.js";
import type { HostLiveness } from "./host-probe.js";
import { registerMcpRoute } from "./mcp.js";
import { registerMeshRoutes } from "./mesh-routes.js";
import { openNodeStore } from "./node-store.js";
import { NodePipeline } from "./pipeline.js";
import {
  type PlatformUpgradeRouteOptions,
  registerPlatformUpgradeRoutes,
} from "./platform-upgrade-routes.js";
import { AppProxy } from "./proxy.js";
import { registerRegistryEventsRoutes } from "./registry-events-routes.js";
import { registerReleaseRootsRoute } from "./release-roots.js";
import { attachReleases } from "./releases-node.js";
import { nodeApiDocument } from "./schemas/document.js";
import { healthSchema, rosterAppsSchema, supervisorsSchema, topologySchema } from "./schemas/roster.js";
import { sshRepoImporter } from "./ssh-fetch.js";
import { nodeVersion } from "./version.js";

export interface NodeOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8090; 0 picks a free port. */
  port?: number;
  /**
   * Created if missing (0700); the embedded store (`node.db`) lives here. Without it the deploy API
   * and webhooks are not served. The roster itself is in memory: peers re-register on a 404
   * heartbeat.
   */
  dataDir?: string;
  /** `postgres://…`: the store is this Postgres database instead of `<dataDir>/node.db`. */
  databaseUrl?: string;
  /** How app addresses are derived for the proxy. Default `local`. */
  mesh?: MeshMode;
  /** `TABBIFY_NODE_KEY`; without it authenticated routes answer 503. */
  nodeKey?: string;
  /** `TABBIFY_REGISTRY_EVENTS_TOKEN`: what the registry's `--notify` sends; default the node key. */
  registryEventsToken?: string;
  /** Roster and WireGuard mesh heartbeat timeout. Default 60 s. */
  peerTimeoutMs?: number;
  /** What mesh register replies tell joiners to heartbeat at. Default 20 s. */
  meshHeartbeatIntervalSecs?: number;
  /**
   * Apps run on other hosts (the WireGuard mesh): when one is slow to answer, ask this whether
   * its host's supervisor still answers ({@link HostProbe}: a TCP handshake), and mark a host
   * that does not lost (its apps answer 502, it is listed down). Hosts whose supervisor misses a
   * heartbeat are asked too, every second, so one with no requests is listed down in seconds.
   */
  hostProbe?: HostLiveness;
  /** Fastify's request log level; `silent` turns it off (tests). Default `info`. */
  httpLogLevel?: LogLevel | "silent";
  /** For proxy and lifecycle messages. */
  logger?: Logger;
  /** Port apps listen on; only tests and benches pick another. */
  appPort?: number;
  /** Sends a platform upgrade request to `tabbify up` (src/node/platform-upgrade-routes.ts). */
  platformUpgradeChannel?: PlatformUpgradeRouteOptions["channel"];
  /** The deploy pipeline's wiring. Secrets arrive here from the environment only. */
  deploy?: NodeDeployOptions;
  /** The app registry's seed, allowed servers and tenant-token check. */
  registry?: NodeRegistryOptions;
  /**
   * Who serves `/app/<uuid>`: the node itself (default), or nginx, caddy or haproxy as a supervised child on the
   * public listener, forwarding everything else to the node's API on a loopback port.
   */
  dataPlane?: DataPlane;
  /** The edge engine's worker processes or threads; benches pin 1. Default one per core, ≤ 2. */
  edgeWorkers?: number;
  /** Device login (RFC 8628): how approved devices get a tenant token. */
  deviceLogin?: DeviceLoginOptions;
  /** Handler deploys' plan and session lifetimes (tests shorten them). */
  contractDeploys?: { planTtlMs?: number; sessionTtlMs?: number };
}

export type DataPlane = "node" | "nginx" | "caddy" | "haproxy";
export const dataPlanes: readonly DataPlane[] = ["node", "nginx", "caddy", "haproxy"];

export interface NodeDeployOptions {
  /** `GITHUB_WEBHOOK_SECRET`; unset ⇒ `/v1/webhooks/github` answers 503. */
  githubWebhookSecret?: string;
  /** `FORGEJO_WEBHOOK_SECRET`; unset ⇒ `/v1/webhooks/forgejo` answers 503. */
  forgejoWebhookSecret?: string;
  /** `GITHUB_API_URL`, default https://api.github.com. */
  githubApiUrl?: string;
  /** `GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY`. */
  githubApp?: { appId: string; privateKeyPem: string };
  /** `FORGEJO_API_URL`, e.g. `https://forgejo.example/api/v1`. */
  forgejoApiUrl?: string;
  /** `FORGEJO_TOKEN`: Forgejo access token for private repositories' contents and clones. */
  forgejoToken?: string;
  /** Where images go and how tenant tokens for it are had; absent ⇒ deploys fail REGISTRY_MISSING. */
  registry?: RegistryAccess;
  /** How long the verify step waits for `/app/<uuid>` to answer. Default 20 s. */
  probeTimeoutMs?: number;
  /** The supervisors' API key (one per fleet), sent as Bearer on every call to a supervisor. */
  supervisorKey?: string;
  /**
   * `--allow-private-repos`: let `POST /v1/deploy` take repo_urls on loopback, link-local or the
   * platform's own addresses (`tabbify up`, tests with local git servers). Default refused.
   */
  allowPrivateRepos?: boolean;
  /**
   * `--allow-local-repos`: let `POST /v1/deploy` take `file://` URLs and absolute paths on the
   * node's disk (`tabbify up`: loopback-only, single-user). Default refused.
   */
  allowLocalRepos?: boolean;
  /** `--ssh-dir`: the node's key (`id_ed25519`) and `known_hosts` for ssh git remotes (default `<data>/ssh`). */
  sshDir?: string;
  /** `--git-credentials`: the node's credential per git host that is no forge. */
  gitCredentials?: HostCredentials;
  /** `--signature-policy`: verify_signature's policy per environment (default prod=require, others warn). */
  signaturePolicies?: ReadonlyMap<string, SignaturePolicy>;
}

export interface RunningNode {
  url: string;
  host: string;
  port: number;
  coordinator: RosterCoordinator;
  /** The WireGuard mesh's coordinator; present when the node has a data dir. */
  mesh: MeshCoordinator | undefined;
  /** Present when the node has a data dir. */
  pipeline: NodePipeline | undefined;
  /** The node's store; present when the node has a data dir. */
  store: Store | undefined;
  /** The node's own API: `url` itself without an edge, its loopback port behind one. */
  apiUrl: string;
  /** Present with an engine as the data plane (not `node`). */
  edge: ProxyEdge | undefined;
  close(): Promise<void>;
}

/** Starts the node's HTTP server: health, roster, topology and the `/app/<uuid>` proxy. */
export async function startNode(options: NodeOptions = {}): Promise<RunningNode> {
  const host = options.host ?? "127.0.0.1";
  const mesh = options.mesh ?? "local";
  const logger = options.logger ?? silentLogger;
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true, mode: 0o700 });

  const coordinator = new RosterCoordinator({ heartbeatTimeoutMs: options.peerTimeoutMs });
  const hostProbe = options.hostProbe;
  const proxy = new AppProxy({
    mesh,
    hasApp: (uuid) => coordinator.hasApp(uuid),
    isLost: (uuid) => coordinator.hasApp(uuid) && coordinator.runnerFor(uuid) === undefined,
    ...(hostProbe ? { hostLost: (uuid: string) => hostLost(coordinator, hostProbe, uuid, logger) } : {}),
    knownApp: async (uuid) => (registry ? (await registry.registry.byUuid(uuid)) !== undefined : false),
    logger: logger.child("proxy"),
    appPort: options.appPort,
  });
  const stopFollowingLosses = coordinator.onLost((peer) => {
    if (peer.kind === "runner") proxy.dropApp(peer.app_uuid ?? peer.name);
  });
  const stopWatchingLateHosts = hostProbe ? watchLateHosts(coordinator, hostProbe, logger) : () => {};
  const keyCheck = new NodeKeyCheck(options.nodeKey);
  const level = options.httpLogLevel ?? "info";

  let rawServer: http.Server | undefined;
  const app = Fastify({
    ...(level === "silent" ? { logger: false } : { loggerInstance: httpLogger("node.http", level) }),
    ajv: schemaAjv,
    // The app door runs on the raw request, before fastify: it is the hot path and must stream.
    serverFactory: (handler) => {
      rawServer = http.createServer({ noDelay: true, requestTimeout: 0 }, (req, res) => {
        if (AppProxy.matches(req.url)) proxy.handleRequest(req, res);
        else handler(req, res);
      });
      rawServer.on("upgrade", (req: http.IncomingMessage, socket, head: Buffer) => {
        if (AppProxy.matches(req.url)) {
          proxy.handleUpgrade(req, socket, head);
          return;
        }
        const text = JSON.stringify({ error: `no upgrade on ${req.url}`, code: "NOT_FOUND" });
        // A peer resetting while we refuse must not become an uncaught exception.
        socket.on("error", () => socket.destroy());
        socket.end(
          `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
        );
      });
      return rawServer;
    },
  });

  await describeApi(app, nodeApiDocument);
  registerDashboard(app, { keyCheck, verifyTenantToken: options.registry?.verifyTenantToken });

  // Registry names for the roster views; the registry exists only with a data dir.
  let registry: AttachedRegistry | undefined;
  const appNames = async () => (registry ? registry.registry.names() : new Map<string, string>());
  let edge: ProxyEdge | undefined;
  let wgMesh: { coordinator: MeshCoordinator; joinKey: () => Promise<Buffer> } | undefined;
  registerMeshRoutes(app, { roster: coordinator, mesh: () => wgMesh, keyCheck });
  registerRoutes(app, coordinator, keyCheck, appNames, () => edge?.status());

  // The verify step asks the node's own /app/<uuid> door, the way users reach the app.
  let selfUrl = "";
  let ownApiUrl = "";
  let pipeline: NodePipeline | undefined;
  let store: Store | undefined;
  if (options.dataDir) {
    const deploy = options.deploy ?? {};
    store = await openNodeStore({
      dataDir: options.dataDir,
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
      logger: logger.child("store"),
    });
    const book = new MeshAddressBook(store);
    wgMesh = {
      coordinator: new MeshCoordinator({
        book,
        ...(options.peerTimeoutMs ? { heartbeatTimeoutMs: options.peerTimeoutMs } : {}),
        ...(options.meshHeartbeatIntervalSecs
          ? { heartbeatIntervalSecs: options.meshHeartbeatIntervalSecs }
          : {}),
      }),
      joinKey: () => book.joinKey(),
    };
    // A mesh host that leaves takes its app addresses with it: end the connections to them.
    wgMesh.coordinator.follow((event) => {
      if (event.type === "leave") for (const ula of event.peer.hosted_app_ulas) proxy.dropAddress(ula);
    });
    pipeline = await NodePipeline.open({
      store,
      dataDir: options.dataDir,
      coordinator,
      ...(deploy.githubApiUrl ? { githubApiUrl: deploy.githubApiUrl } : {}),
      ...(deploy.githubApp ? { githubApp: deploy.githubApp } : {}),
      ...(deploy.forgejoApiUrl ? { forgejoApiUrl: deploy.forgejoApiUrl } : {}),
      ...(deploy.forgejoToken ? { forgejoToken: deploy.forgejoToken } : {}),
      ...(deploy.registry ? { registry: deploy.registry } : {}),
      ...(deploy.signaturePolicies ? { signaturePolicies: deploy.signaturePolicies } : {}),
      ...(deploy.gitCredentials ? { gitCredentials: deploy.gitCredentials } : {}),
      ...(deploy.supervisorKey ? { supervisorKey: deploy.supervisorKey } : {}),
      ...(options.nodeKey ? { ownRepoToken: options.nodeKey } : {}),
      probeApp: (uuid) => probeApp(`${selfUrl}/app/${uuid}/`, deploy.probeTimeoutMs ?? 20_000),
      logger,
    });
    const secrets: { github?: string; forgejo?: string } = {};
    if (deploy.githubWebhookSecret) secrets.github = deploy.githubWebhookSecret;
    if (deploy.forgejoWebhookSecret) secrets.forgejo = deploy.forgejoWebhookSecret;
    const registryHost = deploy.registry?.host;
    const repoPolicy: RepoUrlPolicy = {
      allowPrivate: deploy.allowPrivateRepos === true,
      // Whatever the node can reach of its own platform: itself, the registry, every supervisor.
      platformHosts: () => [
        host,
        ...(registryHost ? [registryHost] : []),
        ...coordinator.supervisors().flatMap((s) => [s.address, s.ula]),
      ],
    };
    const secretValues = [
      options.nodeKey,
      deploy.githubWebhookSecret,
      deploy.forgejoWebhookSecret,
      deploy.forgejoToken,
      deploy.supervisorKey,
    ];
    const sshRepos = sshRepoImporter(pipeline, {
      dataDir: options.dataDir,
      sshDir: deploy.sshDir ?? join(options.dataDir, "ssh"),
      selfUrl: () => selfUrl,
      repoPolicy,
    });
    registry = await attachRegistry(
      app,
      {
        store,
        dataDir: options.dataDir,
        keyCheck,
        coordinator,
        secretValues: secretValues.filter((v): v is string => typeof v === "string"),
        pipeline,
        repoPolicy,
        supervisorKey: deploy.supervisorKey,
        sshRepos,
        logger: logger.child("registry"),
      },
      options.registry,
    );
    await attachReleases(app, {
      store,
      audit: registry.audit,
      registry: registry.registry,
      callers: new CallerResolver({
        keyCheck,
        ...(options.registry?.verifyTenantToken
          ? { verifyTenantToken: options.registry.verifyTenantToken }
          : {}),
      }),
      pipeline,
      coordinator,
      ...(deploy.registry ? { registryAccess: deploy.registry } : {}),
      ...(deploy.supervisorKey ? { supervisorKey: deploy.supervisorKey } : {}),
      logger: logger.child("releases"),
    });
    registerPlatformUpgradeRoutes(app, {
      store,
      keyCheck,
      dataDir: options.dataDir,
      channel: options.platformUpgradeChannel,
    });
    registerGitRoutes(app, {
      dataDir: options.dataDir,
      callers: registry.callers,
      registry: registry.registry,
      pipeline,
      observer: registry.deploys,
      selfUrl: () => selfUrl,
      logger: logger.child("git"),
    });
    const dataDir = options.dataDir;
    registerDeployRoutes(app, {
      pipeline,
      keyCheck,
      secrets,
      repoPolicy,
      ...(deploy.allowLocalRepos
        ? { localRepos: (source: string, ref: string) => importLocalRepo(dataDir, selfUrl, source, ref) }
        : {}),
      sshRepos,
      observer: registry.deploys,
      logger: logger.child("deploy"),
    });
    registerAppLogsRoutes(app, {
      registry: registry.registry,
      keyCheck,
      verifyTenantToken: options.registry?.verifyTenantToken,
      coordinator,
      supervisorKey: deploy.supervisorKey,
    });
    await registerAppEnvRoutes(app, {
      store,
      dataDir: options.dataDir,
      registry: registry.registry,
      audit: registry.audit,
      keyCheck,
      verifyTenantToken: options.registry?.verifyTenantToken,
      supervisorKey: deploy.supervisorKey,
    });
    registerAppHistoryRoutes(app, {
      registry: registry.registry,
      callers: registry.callers,
      store,
      pipeline,
    });
    registerDeviceLoginRoutes(app, {
      keyCheck,
      verifyTenantToken: options.registry?.verifyTenantToken,
      audit: registry.audit,
      login: options.deviceLogin ?? {},
    });
    const registryEventsKey = new NodeKeyCheck(options.registryEventsToken ?? options.nodeKey);
    registerRegistryEventsRoutes(app, {
      store,
      audit: registry.audit,
      keyCheck: registryEventsKey,
      logger: logger.child("registry-events"),
    });
    registerReleaseRootsRoute(app, { store, keyCheck: registryEventsKey });
    registerMcpRoute(app, { callers: registry.callers, audit: registry.audit, apiUrl: () => ownApiUrl });
    registerAuditRoutes(app, { store, callers: registry.callers });
    registerAppOpsRoutes(app, {
      registry: registry.registry,
      audit: registry.audit,
      keyCheck,
      verifyTenantToken: options.registry?.verifyTenantToken,
      coordinator,
      supervisorKey: deploy.supervisorKey,
    });
    attachContractDeploys(app, {
      store,
      audit: registry.audit,
      callers: registry.callers,
      coordinator,
      dataDir,
      supervisorKey: deploy.supervisorKey,
      registry: deploy.registry,
      selfUrl: () => selfUrl,
      ...options.contractDeploys,
    });
  }

  const ready: ReadyChecks = {};
  const openStore = store;
  if (openStore) {
    ready.store = async () =>
      void (await openStore.db.selectFrom("store_meta").select("key").limit(1).execute());
  }
  const imageRegistry = options.deploy?.registry;
  if (imageRegistry) {
    const registryProbe = new RegistryClient({ url: `http://${imageRegistry.host}`, timeoutMs: 2_500 });
    ready.registry = () => registryProbe.health();
  }
  const dataPlane = options.dataPlane ?? "node";
  if (dataPlane !== "node") ready.data_plane = async () => edgeReadiness(edge);
  registerProbes(app, { build: buildInfo(nodeVersion), ready });

  try {
    // Behind an edge the node's API moves to a loopback port only the edge (and local tools) dial.
    await app.listen(
      dataPlane === "node"
        ? listenOptions({ host, port: options.port ?? 8090 })
        : { host: "127.0.0.1", port: 0 },
    );
  } catch (err) {
    await store?.close();
    throw err;
  }
  const server = rawServer as http.Server;
  const apiPort = (server.address() as AddressInfo).port;
  const apiUrl = `http://${hostPort(dataPlane === "node" ? host : "127.0.0.1", apiPort)}`;
  ownApiUrl = apiUrl;
  let port = apiPort;
  if (dataPlane !== "node") {
    port = options.port || (await freeLoopbackPort());
    const edgeDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "tabbify-edge-")));
    edge = new ProxyEdge({
      engine: engineFor(dataPlane),
      listenHost: host,
      listenPort: port,
      nodeApi: { host: "127.0.0.1", port: apiPort },
      appPort: options.appPort ?? APP_PORT,
      dataDir: edgeDir,
      routes: () => rosterRoutes(coordinator, mesh),
      logger: logger.child("edge"),
      ...(options.edgeWorkers ? { workers: options.edgeWorkers } : {}),
    });
    try {
      await edge.start();
    } catch (err) {
      await app.close();
      throw err;
    }
  }
  const url = `http://${hostPort(host, port)}`;
  selfUrl = url;
  logger.info("node listening", {
    url,
    mesh,
    data_plane: dataPlane,
    ...(edge ? { api: apiUrl } : {}),
    node_key: keyCheck.configured ? "set" : "not set",
  });

  return {
    url,
    host,
    port,
    coordinator,
    mesh: wgMesh?.coordinator,
    pipeline,
    store,
    apiUrl,
    edge,
    close: async () => {
      await edge?.close();
      stopWatchingLateHosts();
      stopFollowingLosses();
      proxy.closeTunnels();
      await hostProbe?.settled?.();
      wgMesh?.coordinator.close();
      // Keep-alive clients and streaming responses would hold close() open; give in-flight
      // requests a moment, then cut what is left. The app pool goes only after: a request still
      // proxied (the old node of an upgrade finishing what it accepted) gets its app's answer,
      // not a 502.
      const cut = setTimeout(() => {
        server.closeAllConnections();
        proxy.close();
      }, 2000);
      cut.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
        proxy.close();
        await pipeline?.close();
        // After the pipeline: deploys it let finish still get their end into the audit chain.
        await registry?.close();
        await store?.close();
      }
    },
  };
}

/** The roster's apps as edge routes; a runner record whose name is not a uuid is skipped. */
function rosterRoutes(coordinator: RosterCoordinator, mesh: MeshMode): EdgeRoute[] {
  const routes: EdgeRoute[] = [];
  for (const runner of coordinator.runners()) {
    try {
      const uuid = parseAppUuid(runner.app_uuid ?? runner.name);
      routes.push({ uuid, host: appAddress(uuid, mesh) });
    } catch {
      // Not an app runner: nothing to route.
    }
  }
  return routes;
}

function registerRoutes(
  app: FastifyInstance,
  coordinator: RosterCoordinator,
  keyCheck: NodeKeyCheck,
  appNames: () => Promise<Map<string, string>>,
  edgeStatus: () => EdgeStatus | undefined,
): void {
  app.setErrorHandler((err, req, reply) => {
    const invalid = schemaFailure(err, req, "BAD_REQUEST");
    if (invalid) {
      const body = { error: invalid.message, code: invalid.code };
      return reply.status(nodeErrorStatus[invalid.code] ?? 400).send(body);
    }
    const { status, body } = toNodeError(err);
    if (status >= 500) app.log.error({ err }, "request failed");
    if (body.code === "UNAUTHORIZED") void reply.header("www-authenticate", 'Bearer realm="tabbify-node"');
    return reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    return reply
      .status(404)
      .send({ error: `no route ${req.method} ${req.url.split("?")[0]}`, code: "NOT_FOUND" });
  });

  // These routes take no input: the schemas type what they answer.
  app
    .withTypeProvider<TypeBoxTypeProvider>()
    .get("/health", { schema: healthSchema }, async (_req, reply) => {
      const edge = edgeStatus();
      if (!edge)
        return {
          status: "ok",
          tabbify_version: nodeVersion,
          version: nodeVersion,
          data_plane: "node" as const,
        };
      // Reached through the edge this is 200 unless the engine is mid-restart; asked on the API port
      // directly it says 503 while the edge is down.
      if (!edge.running) void reply.status(503);
      return {
        status: edge.running ? "ok" : "degraded",
        tabbify_version: nodeVersion,
        version: nodeVersion,
        data_plane: edge,
      };
    });

  app.register(async (untyped) => {
    const authed = untyped.withTypeProvider<TypeBoxTypeProvider>();
    authed.addHook("onRequest", async (req: FastifyRequest, _reply: FastifyReply) => {
      keyCheck.assert(req.headers.authorization);
    });

    authed.get("/v1/topology", { schema: topologySchema }, async () => {
      const topology = coordinator.topology();
      const names = await appNames();
      const named = <T extends { app_uuid: string }>(r: T) => ({ ...r, name: names.get(r.app_uuid) ?? null });
      return {
        supervisors: topology.supervisors.map((s) => ({ ...s, runners: s.runners.map(named) })),
        orphaned: topology.orphaned.map(named),
        down: topology.down.map((s) => ({ ...s, runners: s.runners.map(named) })),
      };
    });

    authed.get("/v1/supervisors", { schema: supervisorsSchema }, async () => ({
      supervisors: coordinator.supervisors().map((s) => ({
        peer_id: s.peer_id,
        display_name: s.name,
        ula: s.ula,
        address: s.address,
        tags: s.tags,
        tabbify_version: s.version,
        version: s.version,
        joined_at: s.joined_at,
        last_seen: s.last_seen,
        runner_count: coordinator.runnersOf(s.name).length,
      })),
    }));

    authed.get("/v1/apps", { schema: rosterAppsSchema }, async () => {
      const orphaned = new Set(coordinator.orphanedRunners().map((r) => r.name));
      const names = await appNames();
      return {
        apps: coordinator.runners().map((r) => {
          const uuid = r.app_uuid ?? r.name;
          return {
            uuid,
            name: names.get(uuid) ?? null,
            app_ula: deriveAppUla(uuid),
            address: r.address,
            supervisor: r.parent ?? null,
            orphaned: orphaned.has(r.name),
            tabbify_version: r.version,
            version: r.version,
            last_seen: r.last_seen,
            proxy_path: `/app/${uuid}/`,
          };
        }),
      };
    });
  });
}

/**
 * Waits until `url` answers with anything but a gateway error: the app is reachable through the
 * node. Throws with the last status or error once `timeoutMs` has passed.
 */
async function probeApp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      // The proxy's own 404 (no runner on the roster yet) is not the app answering.
      let text = "";
      if (res.status === 404) text = await res.text();
      else await res.body?.cancel();
      const notOnRoster = res.status === 404 && text.includes('"APP_NOT_FOUND"');
      if (res.status < 500 && !notOnRoster) return;
      last = notOnRoster ? "not on the roster yet" : `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw new Error(`no answer within ${timeoutMs} ms (${last})`);
}
