// The registry over the S3 driver (s3rver): uploads stage on local disk and are published with a
// multipart upload; everything else goes through the same StorageDriver interface.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { S3Driver } from "../src/storage/s3.js";
import { call, patternChunks, pushImage, sha256, streamDigest, streamRequest } from "./registry-helpers.js";
import { type S3rverHandle, startS3rver } from "./support/s3rver.js";

const bucket = "tabbify-registry-test";
let s3rver: S3rverHandle;
let driver: S3Driver;
let dataDir: string;
let registry: RunningRegistry;

before(async () => {
  s3rver = await startS3rver([bucket]);
  Object.assign(process.env, s3rver.credentialsEnv);
  driver = new S3Driver({ bucket, endpoint: s3rver.endpoint, forcePathStyle: true, prefix: "registry/" });
  dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-s3-"));
  registry = await startRegistry({ host: "127.0.0.1", port: 0, driver, dataDir });
});

after(async () => {
  await registry?.close();
  driver?.close();
  await s3rver?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

it("pushes, pulls, tags and refers over S3, staging uploads under the data dir", async () => {
  const image = await pushImage(registry.url, "s3/app", "v1");
  const manifest = await call(registry.url, "/v2/s3/app/manifests/v1");
  assert.equal(manifest.status, 200);
  assert.equal(manifest.headers.get("docker-content-digest"), image.digest);
  const tags = await call(registry.url, "/v2/s3/app/tags/list");
  assert.deepEqual(tags.json(), { name: "s3/app", tags: ["v1"] });
  const range = await call(registry.url, `/v2/s3/app/blobs/${image.layerDigest}`, {
    headers: { range: "bytes=0-4" },
  });
  assert.equal(range.status, 206);
  assert.equal(range.body.toString(), "layer");

  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  const start = await call(registry.url, "/v2/s3/big/blobs/uploads/", { method: "POST" });
  const patch = await streamRequest(
    registry.url,
    "PATCH",
    start.headers.get("location")!,
    patternChunks(40),
    {
      onChunk: (c) => hash.update(c),
    },
  );
  assert.equal(patch.status, 202);
  const digest = `sha256:${hash.digest("hex")}`;
  assert.deepEqual(await readdir(join(dataDir, "staging")), [String(patch.headers["docker-upload-uuid"])]);
  const put = await call(registry.url, `${patch.headers.location}?digest=${digest}`, { method: "PUT" });
  assert.equal(put.status, 201, put.body.toString());
  assert.deepEqual(await readdir(join(dataDir, "staging")), []);
  const pulled = await streamDigest(registry.url, `/v2/s3/big/blobs/${digest}`);
  assert.equal(pulled.digest, digest);
  assert.equal(pulled.size, 40 * 1024 * 1024);

  const wrong = await call(registry.url, `/v2/s3/app/blobs/uploads/?digest=${sha256("x")}`, {
    method: "POST",
    body: "y",
    headers: { "content-type": "application/octet-stream" },
  });
  assert.equal(wrong.status, 400);
  assert.equal((await call(registry.url, `/v2/s3/app/blobs/${sha256("y")}`, { method: "HEAD" })).status, 404);
});
