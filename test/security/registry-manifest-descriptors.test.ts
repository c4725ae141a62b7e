// Issue 9 §6 "Manifest descriptors": a config, layer or child-manifest descriptor whose `size`
// does not match what the registry stores is 400 MANIFEST_INVALID, and nothing is stored (one
// declaring 99999 bytes for an 11-byte blob used to be accepted).
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import {
  call,
  emptyConfig,
  errorCode,
  imageManifest,
  ociIndexType,
  ociManifestType,
  pushBlob,
  pushImage,
  startTestRegistry,
  type TestRegistry,
} from "../registry-helpers.js";

let reg: TestRegistry;
let config: string;
let layer: string;
const layerBytes = Buffer.from("hello world");

before(async () => {
  reg = await startTestRegistry();
  config = await pushBlob(reg.url, "acme/app", emptyConfig);
  layer = await pushBlob(reg.url, "acme/app", layerBytes);
  assert.equal(layerBytes.length, 11);
});
after(() => reg?.close());

async function put(ref: string, body: Buffer, type = ociManifestType) {
  return call(reg.url, `/v2/acme/app/manifests/${ref}`, {
    method: "PUT",
    body,
    headers: { "content-type": type },
  });
}

it("a layer declared 99999 bytes for an 11-byte blob is MANIFEST_INVALID and not stored", async () => {
  const r = await put(
    "liar",
    imageManifest({ digest: config, size: emptyConfig.length }, [{ digest: layer, size: 99999 }]),
  );
  assert.equal(r.status, 400, r.body.toString());
  assert.equal(errorCode(r), "MANIFEST_INVALID");
  assert.match(
    (r.json() as { errors: { message: string }[] }).errors[0]!.message,
    /layers\[0\] declares size 99999 .* has 11 bytes/,
  );
  assert.equal((await call(reg.url, "/v2/acme/app/manifests/liar")).status, 404);
});

it("so is a layer declared shorter than it is, and a config of the wrong size", async () => {
  const short = await put(
    "short",
    imageManifest({ digest: config, size: emptyConfig.length }, [{ digest: layer, size: 5 }]),
  );
  assert.equal(short.status, 400);
  assert.equal(errorCode(short), "MANIFEST_INVALID");
  const badConfig = await put(
    "config",
    imageManifest({ digest: config, size: 1000 }, [{ digest: layer, size: 11 }]),
  );
  assert.equal(badConfig.status, 400);
  assert.equal(errorCode(badConfig), "MANIFEST_INVALID");
  const honest = await put(
    "honest",
    imageManifest({ digest: config, size: emptyConfig.length }, [{ digest: layer, size: 11 }]),
  );
  assert.equal(honest.status, 201);
});

it("an index child declared with the wrong size is MANIFEST_INVALID", async () => {
  const child = await pushImage(reg.url, "acme/app", "child");
  const index = (size: number) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: ociIndexType,
        manifests: [{ mediaType: ociManifestType, digest: child.digest, size }],
      }),
    );
  const bad = await put("multi", index(child.manifest.length + 1), ociIndexType);
  assert.equal(bad.status, 400);
  assert.equal(errorCode(bad), "MANIFEST_INVALID");
  assert.equal((await put("multi", index(child.manifest.length), ociIndexType)).status, 201);
});
