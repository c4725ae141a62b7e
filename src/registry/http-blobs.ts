import type { FastifyReply, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { sendBlobStream } from "./http-blob-stream.js";
import { chunkOptions, contentLength, parseRange, rangeHeader } from "./http-ranges.js";
import { checkName, type V2Route } from "./names.js";
import type { RegistryService } from "./repository.js";
import type { UploadState } from "./uploads.js";

/** The blob endpoints of the /v2 edge: reads and deletes, then upload sessions and mounts. */
export function blobHandlers(service: RegistryService) {
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

  return { blob, startUpload, upload };
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
