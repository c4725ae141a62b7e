/**
 * The typed clients that replaced the last raw calls between components, against the real
 * servers: the registry client (OCI distribution API) on a real registry with its auth service,
 * the node client's streamed upload, and `tabbify up`'s RemoteSupervisor (SupervisorApi's
 * version and handoff, the tarball streamed) on a real supervisor.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileBody } from "../src/core/file-body.js";
import { NodeClient } from "../src/node/client.js";
import { RegistryClient, sha256Digest } from "../src/registry/client.js";
import { RemoteSupervisor } from "../src/upgrade/remote-supervisor.js";
import {
  bearerFor,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "./registry-helpers.js";
import { SupervisorUnderTest } from "./runtime-plane-support.js";
import { tempDir } from "./support/tools.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

describe("the registry client on a real registry", () => {
  let auth: TestAuth;
  let reg: TestRegistry;
  let work: { path: string; remove(): Promise<void> };
  let token: string;
  before(async () => {
    auth = await startTestAuth();
    reg = await startTestRegistry({ authUrl: auth.url });
    work = await tempDir("tabbify-api-clients");
    const headers = await bearerFor(reg.url, await auth.jwt("acme"), ["repository:acme/web:pull,push"]);
    token = (headers.authorization ?? "").replace(/^Bearer /, "");
  });
  after(async () => {
    await reg?.close();
    await auth?.close();
    await work?.remove();
  });

  it("pushes a blob streamed from disk, a manifest by tag, and reads both back", async () => {
    const repo = new RegistryClient({ url: reg.url, token }).repository("acme/web");
    assert.equal(await repo.tags(), undefined, "no repository yet");
    const file = join(work.path, "layer.bin");
    const layer = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(file, layer);
    const layerDigest = sha256Digest(layer);
    assert.equal(await repo.hasBlob(layerDigest), false);
    await repo.pushBlob(layerDigest, () => fileBody(file));
    assert.equal(await repo.hasBlob(layerDigest), true);
    // A second push of the same digest finds it there and sends nothing.
    await repo.pushBlob(layerDigest, () => Promise.reject(new Error("must not be read")));
    const config = Buffer.from("{}");
    await repo.pushBlob(sha256Digest(config), config);

    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256Digest(config), size: 2 },
        layers: [{ mediaType: "application/octet-stream", digest: layerDigest, size: layer.length }],
      }),
    );
    const digest = await repo.putManifest("v1", OCI_MANIFEST, manifest);
    assert.equal(digest, sha256Digest(manifest));
    assert.deepEqual(await repo.tags(), ["v1"]);
    const described = await repo.describeManifest("v1", OCI_MANIFEST);
    assert.deepEqual(described, { mediaType: OCI_MANIFEST, digest, size: manifest.length });
    assert.deepEqual(await repo.manifest(digest, OCI_MANIFEST, 1024 * 1024), manifest);
    await assert.rejects(repo.manifest(digest, OCI_MANIFEST, 16), { code: "REGISTRY_ANSWER_TOO_LARGE" });
    const stream = await repo.blob(layerDigest);
    assert.ok(stream);
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk);
    assert.equal(`sha256:${hash.digest("hex")}`, layerDigest);
    assert.equal(await repo.describeManifest("v2", OCI_MANIFEST), undefined);
    assert.equal(await repo.blob(`sha256:${"0".repeat(64)}`), undefined);
  });

  it("a refusal carries the caller's code and never the token; no answer is REGISTRY_UNREACHABLE", async () => {
    const stranger = new RegistryClient({
      url: reg.url,
      token: `${token}x`,
      failure: "REGISTRY_PUSH_FAILED",
    });
    await assert.rejects(
      stranger.repository("acme/web").pushBlob(sha256Digest(Buffer.from("x")), Buffer.from("x")),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, "REGISTRY_PUSH_FAILED");
        assert.match(err.message, /HTTP 401/);
        assert.ok(!err.message.includes(token), "the token is not in the message");
        return true;
      },
    );
    const other = new RegistryClient({ url: reg.url, token }).repository("globex/web");
    await assert.rejects(other.tags(), { code: "REGISTRY_REFUSED" });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await assert.rejects(new RegistryClient({ url: `http://127.0.0.1:${port}` }).health(), {
      code: "REGISTRY_UNREACHABLE",
    });
    await new RegistryClient({ url: reg.url }).health();
  });

  it("exchanges a tenant JWT for a scoped registry token at /auth/token", async () => {
    const answer = await new RegistryClient({ url: reg.url }).token(
      "tabbify-registry",
      "repository:acme/web:pull",
      {
        user: "tabbify-node",
        password: await auth.jwt("acme"),
      },
    );
    assert.equal(typeof (answer.token ?? answer.access_token), "string");
    await assert.rejects(
      new RegistryClient({ url: reg.url, failure: "REGISTRY_TOKEN_FAILED" }).token(
        "tabbify-registry",
        "repository:acme/web:pull",
        { user: "tabbify-node", password: "not-a-jwt" },
      ),
      (err: Error & { code?: string }) =>
        err.code === "REGISTRY_TOKEN_FAILED" && !err.message.includes("not-a-jwt"),
    );
  });
});

describe("the node client's streamed upload", () => {
  let server: Server;
  let url: string;
  const seen: { headers: Record<string, unknown>; size: number; digest: string }[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const hash = createHash("sha256");
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        hash.update(c);
      });
      req.on("end", () => {
        seen.push({ headers: req.headers, size, digest: hash.digest("hex") });
        res.writeHead(202, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: "u-1", status: "in_progress" }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("sends the file as it reads it, with its length and type and the token", async () => {
    const work = await tempDir("tabbify-api-upload");
    try {
      const file = join(work.path, "release.tar.gz");
      const bytes = randomBytes(5 * 1024 * 1024 + 3);
      await writeFile(file, bytes);
      const node = new NodeClient({ url, token: "k-123" });
      const answer = await node.upload<{ id: string }>(
        "POST",
        "/api/v1/platform/upgrade",
        await fileBody(file),
      );
      assert.equal(answer.id, "u-1");
      const got = seen.at(-1)!;
      assert.equal(got.size, bytes.length);
      assert.equal(got.digest, createHash("sha256").update(bytes).digest("hex"));
      assert.equal(got.headers["content-length"], String(bytes.length));
      assert.equal(got.headers["content-type"], "application/octet-stream");
      assert.equal(got.headers.authorization, "Bearer k-123");
    } finally {
      await work.remove();
    }
  });
});

describe("tabbify up's RemoteSupervisor on a real supervisor", () => {
  const sup = new SupervisorUnderTest(["--warm-spares", "0"]);
  before(async () => {
    await sup.start();
  });
  after(async () => {
    await sup.cleanup();
  });
  const leftOnDisk = () =>
    ["platform-upgrades", "releases"].flatMap((d) => {
      const path = join(sup.dataDir, d);
      return existsSync(path) ? readdirSync(path).map((f) => `${d}/${f}`) : [];
    });

  it("reads the version it runs, and names the supervisor's refusal of a release it lacks", async () => {
    const remote = await RemoteSupervisor.reach("sup-b", sup.base, sup.apiKey);
    assert.match(remote.entry, /^\d+\.\d+\.\d+/);
    await assert.rejects(remote.handoff(remote.entry, "99.0.0", 5_000), (err: Error & { code?: string }) => {
      assert.equal(err.code, "ROLE_NOT_READY");
      assert.match(err.message, /^sup-b 99\.0\.0: no release 99\.0\.0 on this host/);
      assert.ok(!err.message.includes(sup.apiKey));
      return true;
    });
    assert.equal(remote.entry, (await RemoteSupervisor.reach("sup-b", sup.base, sup.apiKey)).entry);
  });

  it("streams the tarball when the supervisor lacks the version, and a tarball that is no release changes nothing", async () => {
    const work = await tempDir("tabbify-api-remote");
    try {
      const tarball = join(work.path, "release.tar.gz");
      await writeFile(tarball, randomBytes(256 * 1024));
      const remote = await RemoteSupervisor.reach("sup-b", sup.base, sup.apiKey, tarball);
      await assert.rejects(
        remote.handoff(remote.entry, "99.0.0", 5_000),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, "ROLE_NOT_READY");
          // The 404 for the version was followed by the upload, whose refusal is what is named.
          assert.match(err.message, /^sup-b 99\.0\.0: the tarball does not unpack/);
          return true;
        },
      );
      assert.deepEqual(leftOnDisk(), []);
      await assert.rejects(RemoteSupervisor.reach("sup-b", sup.base.replace(/:\d+$/, ":1"), sup.apiKey), {
        code: "ROLE_NOT_READY",
      });
    } finally {
      await work.remove();
    }
  });
});
