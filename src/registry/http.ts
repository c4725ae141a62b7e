import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import { buildInfo, registerProbes } from "../core/probes.js";
import { tabbifyVersion } from "../core/version.js";
import { canonicalPath, requiredAccess } from "./access.js";
import type { AuthGate, RegistryIdentity } from "./auth-gate.js";
import { toOciError } from "./errors.js";
import { blobHandlers } from "./http-blobs.js";
import {
  catalogScope,
  isClientGone,
  linkNext,
  mapError,
  neededFor,
  pagination,
  splitUrl,
} from "./http-edge.js";
import { manifestHandler } from "./http-manifests.js";
import { rangeHeader } from "./http-ranges.js";
import { layout } from "./layout.js";
import { mediaTypes } from "./manifests.js";
import { parseV2Path, type V2Route } from "./names.js";
import type { Notifier } from "./notifications.js";
import type { RegistryService } from "./repository.js";
import type { UpstreamProxy } from "./upstream.js";

export interface RegistryAppOptions {
  service: RegistryService;
  /** The bearer-token gate; absent in anonymous dev mode. */
  gate?: AuthGate;
  /** Upstream wrapper mode: /v2 goes to this registry (after the gate) instead of `service`. */
  upstream?: UpstreamProxy;
  /** Manifest pushes and deletes are queued here for the `--notify` endpoints. */
  notifier?: Notifier;
  log?: Logger;
}

const methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;

/**
 * The /v2 HTTP edge: parses requests, runs the auth gate, calls the repository service and
 * shapes replies. Request bodies are never parsed by fastify (one catch-all parser leaves them
 * unread) so uploads stream from `request.raw`; blob replies stream from the driver.
 */
export function buildRegistryApp(opts: RegistryAppOptions): FastifyInstance {
  const { service, gate, upstream } = opts;
  const log = opts.log ?? silentLogger;
  const { blob, startUpload, upload } = blobHandlers(service);
  const manifest = manifestHandler(opts);
  const app = Fastify({
    logger: false,
    exposeHeadRoutes: false,
    // Big blobs take long; the upload itself is bounded by the client, not a timer.
    requestTimeout: 0,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 4096, ignoreDuplicateSlashes: false },
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));

  app.addHook("onRequest", async (_request, reply) => {
    reply.header("docker-distribution-api-version", "registry/2.0");
  });

  app.setErrorHandler((err, request, reply) => {
    const mapped = mapError(err);
    if (mapped.status >= 500 && !isClientGone(err, request)) {
      log.error("request failed", {
        method: request.method,
        path: request.url.split("?")[0],
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
    }
    if (mapped.status === 401 && gate) {
      reply.header(
        "www-authenticate",
        gate.challenge(
          request.protocol,
          request.headers.host,
          neededFor(request),
          isTabbifyError(err, "INSUFFICIENT_SCOPE"),
        ),
      );
    }
    const detail = isTabbifyError(err)
      ? (err.detail as { size?: unknown; blobSize?: unknown } | undefined)
      : undefined;
    // A refused chunk says where the upload stands; a refused blob range says how big the blob is.
    if (mapped.status === 416 && typeof detail?.size === "number")
      reply.header("range", rangeHeader(detail.size));
    if (mapped.status === 416 && typeof detail?.blobSize === "number") {
      reply.header("content-range", `bytes */${detail.blobSize}`);
    }
    reply.removeHeader("content-length");
    return reply.code(mapped.status).type("application/json").send(mapped.body);
  });

  app.setNotFoundHandler((request, reply) => {
    const err = new TabbifyError("NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`);
    const mapped = toOciError(err);
    return reply.code(404).type("application/json").send(mapped.body);
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const { pathname, query } = splitUrl(request.url);
    const route = parseV2Path(pathname);
    const mounting = route?.kind === "uploads" && query.has("mount");
    let mountAllowed = true;
    let identity: RegistryIdentity | undefined;
    if (gate) {
      const mountFrom = mounting ? (query.get("from") ?? undefined) : undefined;
      ({ mountAllowed, identity } = await gate.authorize(request.method, request.headers, route, mountFrom));
    }
    if (mounting && query.getAll("from").length > 1) {
      throw new TabbifyError("BLOB_UPLOAD_INVALID", "a mount names one source repository (one from=)");
    }
    if (!route) throw new TabbifyError("NOT_FOUND", `no /v2 endpoint at ${pathname.slice(0, 300)}`);
    if (upstream) {
      if (route.kind === "catalog" && identity) {
        // The upstream's catalog holds every tenant; filtering its pages is not done here.
        throw new TabbifyError("DENIED", "the catalog is not served in wrapper mode with auth");
      }
      // The upstream gets the path the gate judged, rebuilt from its parts, and never a mount
      // the token may not read from.
      requiredAccess(request.method, route);
      if (!mountAllowed) {
        query.delete("mount");
        query.delete("from");
      }
      const search = query.toString();
      return upstream.forward(
        request,
        reply,
        `${canonicalPath(route, request.method)}${search ? `?${search}` : ""}`,
      );
    }
    return dispatch(route, query, request, reply, mountAllowed, identity);
  };

  registerProbes(app, {
    build: buildInfo(tabbifyVersion),
    // A stat of the storage root reaches the disk or the S3 bucket; absence is fine, an error is not.
    ready: { storage: async () => void (await service.driver.stat(layout.repositoriesRoot)) },
  });
  app.route({ method: [...methods], url: "/v2", handler });
  app.route({ method: [...methods], url: "/v2/*", handler });

  app.route({
    method: ["GET", "POST"],
    url: "/auth/token",
    handler: async (request, reply) => {
      if (!gate) {
        throw new TabbifyError(
          "UNSUPPORTED",
          "this registry runs without auth (anonymous dev mode): no token needed",
        );
      }
      const { query } = splitUrl(request.url);
      const grant = await gate.issue(request.method, request.headers, query, request.raw);
      return reply.header("cache-control", "no-store").type("application/json").send(grant);
    },
  });

  async function dispatch(
    route: V2Route,
    query: URLSearchParams,
    request: FastifyRequest,
    reply: FastifyReply,
    mountAllowed: boolean,
    identity: RegistryIdentity | undefined,
  ) {
    const method = request.method;
    switch (route.kind) {
      case "base":
        if (method !== "GET" && method !== "HEAD") break;
        return reply.type("application/json").send("{}");
      case "catalog": {
        if (method !== "GET") break;
        const { n, last } = pagination(query);
        const page = await service.listRepositories(n, last, identity && catalogScope(identity));
        linkNext(reply, "/v2/_catalog", n, page);
        return reply.type("application/json").send({ repositories: page.items });
      }
      case "tags": {
        if (method !== "GET") break;
        const { n, last } = pagination(query);
        const page = await service.listTags(route.name, n, last);
        linkNext(reply, `/v2/${route.name}/tags/list`, n, page);
        return reply.type("application/json").send({ name: route.name, tags: page.items });
      }
      case "manifest":
        return manifest(route, request, reply, identity);
      case "blob":
        return blob(route, request, reply);
      case "uploads":
        if (method !== "POST") break;
        return startUpload(route.name, query, request, reply, mountAllowed);
      case "upload":
        return upload(route, query, request, reply);
      case "referrers": {
        if (method !== "GET") break;
        const artifactType = query.get("artifactType") ?? undefined;
        const { n, last } = pagination(query);
        const { index, next } = await service.referrers(route.name, route.digest, {
          ...(artifactType !== undefined ? { artifactType } : {}),
          ...(n !== undefined ? { n } : {}),
          ...(last !== undefined ? { last } : {}),
        });
        if (artifactType !== undefined) reply.header("oci-filters-applied", "artifactType");
        if (next !== undefined) {
          const filter =
            artifactType !== undefined ? `&artifactType=${encodeURIComponent(artifactType)}` : "";
          reply.header(
            "link",
            `</v2/${route.name}/referrers/${route.digest}?n=${index.manifests.length}&last=${encodeURIComponent(next)}${filter}>; rel="next"`,
          );
        }
        return reply.type(mediaTypes.ociIndex).send(Buffer.from(JSON.stringify(index)));
      }
    }
    throw new TabbifyError("UNSUPPORTED", `${method} is not supported on this endpoint`);
  }

  return app;
}
