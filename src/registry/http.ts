import type { OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { allows, type ResourceAccess } from "../auth/registry-scope.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import { buildInfo, registerProbes } from "../core/probes.js";
import { tabbifyVersion } from "../core/version.js";
import type { ByteRange } from "../storage/driver.js";
import { canonicalPath, requiredAccess } from "./access.js";
import type { AuthGate, RegistryIdentity } from "./auth-gate.js";
import { toOciError } from "./errors.js";
import { layout } from "./layout.js";
import { maxManifestBytes, mediaTypes } from "./manifests.js";
import { checkName, parseV2Path, type V2Route } from "./names.js";
import { isDigestReference, manifestEvent, type Notifier } from "./notifications.js";
import type { CatalogScope, Page, RegistryService } from "./repository.js";
import type { UploadState } from "./uploads.js";
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

  async function manifest(
    route: Extract<V2Route, { kind: "manifest" }>,
    request: FastifyRequest,
    reply: FastifyReply,
    identity: RegistryIdentity | undefined,
  ) {
    const { name, reference } = route;
    switch (request.method) {
      case "GET":
      case "HEAD": {
        const m = await service.getManifest(name, reference, request.headers.accept);
        reply
          .header("docker-content-digest", m.digest)
          .header("etag", `"${m.digest}"`)
          .header("content-length", String(m.size))
          .type(m.mediaType);
        return request.method === "HEAD" ? reply.send() : reply.send(m.content);
      }
      case "PUT": {
        checkName(name);
        const body = await readManifestBody(request);
        const stored = await service.putManifest(name, reference, body, request.headers["content-type"]);
        await opts.notifier?.publish(
          manifestEvent(request, identity, "push", name, stored.digest, {
            mediaType: request.headers["content-type"] ?? "",
            size: body.length,
            ...(isDigestReference(reference) ? {} : { tag: reference }),
          }),
          request.headers.host ?? "",
        );
        reply
          .code(201)
          .header("location", `/v2/${name}/manifests/${stored.digest}`)
          .header("docker-content-digest", stored.digest);
        if (stored.subject) reply.header("oci-subject", stored.subject);
        return reply.header("content-length", "0").send();
      }
      case "DELETE": {
        const deleted = await service.deleteManifest(name, reference);
        await opts.notifier?.publish(
          manifestEvent(
            request,
            identity,
            "delete",
            name,
            deleted.digest,
            deleted.tag ? { tag: deleted.tag } : {},
          ),
          request.headers.host ?? "",
        );
        return reply.code(202).header("content-length", "0").send();
      }
    }
    throw new TabbifyError("UNSUPPORTED", `${request.method} is not supported on manifests`);
  }

  async function blob(
    route: Extract<V2Route, { kind: "blob" }>,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    const { name, digest } = route;
    switch (request.method) {
      case "HEAD": {
        const b = await service.statBlob(name, digest);
        return reply
          .header("docker-content-digest", b.digest)
          .header("etag", `"${b.digest}"`)
          .header("accept-ranges", "bytes")
          .header("content-length", String(b.size))
          .type("application/octet-stream")
          .send();
      }
      case "GET": {
        const rangeHeaderValue = request.headers.range;
        const b = await service.openBlob(name, digest, (size) => parseRange(rangeHeaderValue, size));
        reply
          .header("docker-content-digest", b.digest)
          .header("etag", `"${b.digest}"`)
          .header("accept-ranges", "bytes")
          .type("application/octet-stream");
        if (b.range) {
          reply
            .code(206)
            .header("content-range", `bytes ${b.range.start}-${b.range.end}/${b.size}`)
            .header("content-length", String(b.range.end - b.range.start + 1));
        } else {
          reply.header("content-length", String(b.size));
        }
        return sendBlobStream(reply, b.stream);
      }
      case "DELETE":
        await service.deleteBlob(name, digest);
        return reply.code(202).header("content-length", "0").send();
    }
    throw new TabbifyError("UNSUPPORTED", `${request.method} is not supported on blobs`);
  }

  async function startUpload(
    name: string,
    query: URLSearchParams,
    request: FastifyRequest,
    reply: FastifyReply,
    mountAllowed: boolean,
  ) {
    checkName(name);
    const mount = query.get("mount");
    const from = query.get("from");
    if (mount !== null && from !== null && mountAllowed) {
      const mounted = await service.mountBlob(name, mount, from);
      if (mounted) return blobCreated(reply, name, mounted.digest);
      // Not readable in `from`: the spec's fallback is a regular upload session.
    }
    const digest = query.get("digest");
    if (digest !== null && mount === null) {
      const pushed = await service.pushBlob(name, digest, request.raw, contentLength(request));
      return blobCreated(reply, name, pushed.digest);
    }
    const state = await service.startUpload(name);
    return uploadAccepted(reply, name, state, 202);
  }

  async function upload(
    route: Extract<V2Route, { kind: "upload" }>,
    query: URLSearchParams,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    const { name, id } = route;
    switch (request.method) {
      case "GET": {
        const state = await service.uploadStatus(name, id);
        return uploadAccepted(reply, name, state, 204);
      }
      case "PATCH": {
        const state = await service.appendUpload(name, id, request.raw, chunkOptions(request));
        return uploadAccepted(reply, name, state, 202);
      }
      case "PUT": {
        const digest = query.get("digest");
        if (digest === null) {
          throw new TabbifyError("DIGEST_INVALID", "PUT completing an upload needs ?digest=<digest>");
        }
        const length = contentLength(request);
        const hasBody =
          length === undefined ? request.headers["transfer-encoding"] !== undefined : length > 0;
        const done = await service.finishUpload(
          name,
          id,
          digest,
          hasBody ? { body: request.raw, opts: chunkOptions(request) } : undefined,
        );
        return blobCreated(reply, name, done.digest);
      }
      case "DELETE":
        await service.cancelUpload(name, id);
        return reply.code(204).send();
    }
    throw new TabbifyError("UNSUPPORTED", `${request.method} is not supported on uploads`);
  }

  return app;
}

/**
 * Writes a blob stream to the socket ourselves instead of through `reply.send`: each chunk is
 * handed back to the stream (`recycle`, when it has one) once the socket has taken it, so a
 * local-disk read reuses its buffers instead of allocating 1 MiB per read (see FileRangeStream).
 * The app registers no onSend hook, so the status and headers set on `reply` are the whole reply.
 */
async function sendBlobStream(reply: FastifyReply, stream: Readable): Promise<void> {
  const recycle = (stream as Partial<Recycling>).recycle?.bind(stream);
  const res = reply.raw;
  reply.hijack();
  res.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      res.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  try {
    for await (const chunk of stream) {
      await write(chunk as Buffer);
      recycle?.(chunk as Buffer);
    }
    res.end();
  } catch {
    // The client went away or the storage read failed: the status line is sent, so all that
    // is left is to cut the connection, which tells the client the body is incomplete.
    stream.destroy();
    res.destroy();
  }
}

interface Recycling {
  recycle(chunk: Buffer): void;
}

function blobCreated(reply: FastifyReply, name: string, digest: string) {
  return reply
    .code(201)
    .header("location", `/v2/${name}/blobs/${digest}`)
    .header("docker-content-digest", digest)
    .header("content-length", "0")
    .send();
}

function uploadAccepted(reply: FastifyReply, name: string, state: UploadState, status: 202 | 204) {
  reply
    .code(status)
    .header("location", `/v2/${name}/blobs/uploads/${state.id}`)
    .header("range", rangeHeader(state.size))
    .header("docker-upload-uuid", state.id);
  if (status === 202) reply.header("content-length", "0");
  return reply.send();
}

/** `Range: 0-<last byte>` as distribution sends it; an empty upload reads `0-0`. */
function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

function contentLength(request: FastifyRequest): number | undefined {
  const raw = request.headers["content-length"];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new TabbifyError("SIZE_INVALID", "invalid Content-Length");
  return n;
}

/** A chunk's declared position: `Content-Range: <start>-<end>` (OCI form; `bytes ` tolerated). */
function chunkOptions(request: FastifyRequest): { start?: number; end?: number; length?: number } {
  const out: { start?: number; end?: number; length?: number } = {};
  const length = contentLength(request);
  if (length !== undefined) out.length = length;
  const raw = request.headers["content-range"];
  if (raw !== undefined) {
    const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(raw.trim());
    if (!m)
      throw new TabbifyError(
        "RANGE_INVALID",
        `invalid Content-Range "${raw.slice(0, 100)}": want <start>-<end>`,
      );
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (end < start)
      throw new TabbifyError("RANGE_INVALID", `Content-Range end ${end} is before its start ${start}`);
    out.start = start;
    out.end = end;
  }
  return out;
}

/**
 * A blob GET's `Range`. One `bytes=` range is served (206); a syntactically odd header or a
 * multi-range is ignored (200, the whole blob), as RFC 9110 allows; a range that starts past the
 * end is RANGE_INVALID (416).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw rangeInvalid(header, size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) throw rangeInvalid(header, size);
  return { start, end };
}

function rangeInvalid(header: string, size: number): TabbifyError {
  return new TabbifyError(
    "RANGE_INVALID",
    `range "${header.slice(0, 100)}" is outside the blob's ${size} bytes`,
    {
      blobSize: size,
    },
  );
}

function pagination(query: URLSearchParams): { n?: number; last?: string } {
  const out: { n?: number; last?: string } = {};
  const n = query.get("n");
  if (n !== null && n !== "") {
    const value = Number(n);
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new TabbifyError(
        "PAGINATION_NUMBER_INVALID",
        `n must be a non-negative integer, got "${n.slice(0, 50)}"`,
      );
    }
    out.n = value;
  }
  const last = query.get("last");
  if (last !== null && last !== "") out.last = last;
  return out;
}

function linkNext(reply: FastifyReply, path: string, n: number | undefined, page: Page<string>): void {
  if (page.next === undefined || n === undefined) return;
  reply.header("link", `<${path}?n=${n}&last=${encodeURIComponent(page.next)}>; rel="next"`);
}

async function readManifestBody(request: FastifyRequest): Promise<Buffer> {
  const declared = contentLength(request);
  const tooLarge = () =>
    new TabbifyError("MANIFEST_TOO_LARGE", `manifest is over the ${maxManifestBytes}-byte limit`, {
      limit: maxManifestBytes,
    });
  if (declared !== undefined && declared > maxManifestBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of request.raw) {
    total += (chunk as Buffer).length;
    if (total > maxManifestBytes) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * A request target's path and query, split by hand: WHATWG URL parsing would resolve `..` and `.`
 * segments, and a name with them must be refused, not silently turned into another repository.
 */
function splitUrl(url: string): { pathname: string; query: URLSearchParams } {
  const queryAt = url.indexOf("?");
  return {
    pathname: queryAt === -1 ? url : url.slice(0, queryAt),
    query: new URLSearchParams(queryAt === -1 ? "" : url.slice(queryAt + 1)),
  };
}

/** The access a request needs, for its challenge; null when it needs none or names no endpoint. */
function neededFor(request: FastifyRequest): ResourceAccess | null {
  const route = parseV2Path(request.url.split("?")[0] ?? "");
  if (!route) return null;
  try {
    return requiredAccess(request.method, route);
  } catch {
    return null;
  }
}

/** Fastify's own 4xx errors (bad headers, …) keep their status; everything else goes through the table. */
function mapError(err: unknown) {
  if (!isTabbifyError(err)) {
    const status = (err as { statusCode?: unknown } | null)?.statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) {
      return {
        status,
        body: {
          errors: [{ code: "UNSUPPORTED", message: "the request could not be processed", detail: {} }],
        },
      };
    }
  }
  return toOciError(err);
}

function isClientGone(err: unknown, request: FastifyRequest): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    request.raw.destroyed ||
    code === "ECONNRESET" ||
    code === "ERR_STREAM_PREMATURE_CLOSE" ||
    code === "ABORT_ERR"
  );
}

/**
 * What a token's catalog holds: the repositories under its tenant, and for a robot token only
 * those its scopes let it pull. Other tenants' names never reach the page, its Link or an error.
 */
function catalogScope(identity: RegistryIdentity): CatalogScope {
  const { scopes } = identity;
  return {
    under: identity.tenant,
    ...(scopes ? { keep: (name: string) => allows(scopes, "repository", name, "pull") } : {}),
  };
}
