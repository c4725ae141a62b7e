/**
 * Attacks on a supervisor's pull of a handler artifact (src/supervisor/handler-artifact.ts), from
 * a registry that lies: a manifest whose bytes are not the digest asked for, a layer whose bytes
 * are not its digest, an artifact that is not a handler, a missing one, and references that point
 * the pull somewhere else. Nothing half-pulled is left behind to be reused.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseHandlerArtifact, pullHandlerArtifact } from "../../src/supervisor/handler-artifact.js";
import { tempDir } from "../support/tools.js";

const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

function manifestOf(layer: Buffer, artifactType = "application/vnd.tabbify.handler.v1"): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType,
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha("{}"), size: 2 },
      layers: [
        {
          mediaType: "application/vnd.tabbify.handler.bundle.v1+javascript",
          digest: sha(layer),
          size: layer.length,
        },
      ],
    }),
  );
}

describe("a handler artifact pull from a lying registry", () => {
  const bundle = Buffer.from("export default () => new Response('real');\n");
  const good = manifestOf(bundle);
  const notHandler = manifestOf(bundle, "application/vnd.example.other");
  /** digest → what the registry serves for it. */
  const manifests = new Map<string, Buffer>();
  const blobs = new Map<string, Buffer>();
  let registry: http.Server;
  let url: string;
  let data: { path: string; remove(): Promise<void> };
  const seenAuth: string[] = [];

  before(async () => {
    data = await tempDir("contract-pull");
    manifests.set(sha(good), good);
    manifests.set(sha(notHandler), notHandler);
    blobs.set(sha(bundle), bundle);
    registry = http.createServer((req, res) => {
      seenAuth.push(req.headers.authorization ?? "");
      const m = /^\/v2\/acme\/app\/(manifests|blobs)\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? "");
      const body = m ? (m[1] === "manifests" ? manifests : blobs).get(m[2]!) : undefined;
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(body);
    });
    await new Promise<void>((r) => registry.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(registry.address() as AddressInfo).port}`;
  });
  after(async () => {
    registry?.close();
    await data?.remove();
  });

  const pull = (digest: string) =>
    pullHandlerArtifact({ registryUrl: url, repository: "acme/app", digest }, "pull-token", data.path);

  test("an honest artifact is pulled with the token, its bytes checked, beside the platform's host", async () => {
    const dir = await pull(sha(good));
    assert.deepEqual((await readdir(dir)).sort(), ["handler.mjs", "host", "package.json"]);
    assert.ok(seenAuth.every((a) => a === "Bearer pull-token"));
  });

  test("other bytes than the digest, a lying layer, a non-handler, a missing one: refused, nothing kept", async () => {
    // The registry answers a manifest digest with another manifest's bytes.
    const forged = sha("forged");
    manifests.set(forged, good);
    await assert.rejects(pull(forged), { code: "DIGEST_MISMATCH" });
    // The manifest is honest about itself, but the layer's bytes are not its digest.
    const evil = Buffer.from("export default () => new Response('evil');\n");
    const lying = manifestOf(Buffer.from("x".repeat(evil.length)));
    manifests.set(sha(lying), lying);
    blobs.set(JSON.parse(lying.toString()).layers[0].digest, evil);
    await assert.rejects(pull(sha(lying)), { code: "DIGEST_MISMATCH" });
    await assert.rejects(pull(sha(notHandler)), { code: "SPEC_INVALID" });
    await assert.rejects(pull(sha("absent")), { code: "IMAGE_NOT_FOUND" });
    const kept = await readdir(join(data.path, "handler-artifacts"));
    assert.deepEqual(kept, [sha(good).slice(7)], "only the honest pull is there, no staging left");
  });

  test("references cannot point the pull elsewhere", () => {
    for (const bad of [
      { registry_url: `${url}/v2/other`, repository: "acme/app", digest: sha(good) },
      { registry_url: "http://user:pw@127.0.0.1:1", repository: "acme/app", digest: sha(good) },
      { registry_url: "file:///etc", repository: "acme/app", digest: sha(good) },
      { registry_url: url, repository: "../../v2/x", digest: sha(good) },
      { registry_url: url, repository: "acme/app", digest: "sha256:../../x" },
      { registry_url: url, repository: "acme/app", digest: "latest" },
    ]) {
      assert.throws(() => parseHandlerArtifact(bad), { code: "SPEC_INVALID" }, JSON.stringify(bad));
    }
  });
});
