import type { FastifyReply, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { RegistryIdentity } from "./auth-gate.js";
import { contentLength } from "./http-ranges.js";
import { maxManifestBytes } from "./manifests.js";
import { checkName, type V2Route } from "./names.js";
import { isDigestReference, manifestEvent, type Notifier } from "./notifications.js";
import type { RegistryService } from "./repository.js";

/** The manifest endpoint of the /v2 edge; pushes and deletes are queued for `--notify`. */
export function manifestHandler(opts: { service: RegistryService; notifier?: Notifier | undefined }) {
  const { service } = opts;
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

  return manifest;
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
