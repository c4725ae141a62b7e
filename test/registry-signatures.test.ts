// Issue 14 §3: image signatures in cosign's key-based layout, stored as OCI 1.1 referrers (and
// the `.sig` tag), checked field by field against cosign's format and verified by our verifier
// (Debian's skopeo has sigstore verification compiled out: "Debian-local change: sigstore
// disabled"; see docs/DECISIONS.md). Refused: an unsigned image pushed by hand, an image signed
// by another tenant's key, and a signed image whose tag was moved.
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { type BuildKey, loadOrCreateBuildKey } from "../src/auth/build-keys.js";
import { isTabbifyError } from "../src/core/errors.js";
import { RegistryClient } from "../src/registry/client.js";
import {
  signatureMediaTypes,
  signatureTag,
  signImage,
  verifyImageSignature,
} from "../src/registry/signatures.js";
import {
  call,
  ociManifestType,
  pushImage,
  startTestRegistry,
  type TestRegistry,
} from "./registry-helpers.js";

let reg: TestRegistry;
let dir: string;
let acmeKey: BuildKey;
let globexKey: BuildKey;
let host: string;

before(async () => {
  reg = await startTestRegistry();
  host = reg.url.replace("http://", "");
  dir = await mkdtemp(join(tmpdir(), "tabbify-signatures-"));
  acmeKey = await loadOrCreateBuildKey(join(dir, "keys"), "acme");
  globexKey = await loadOrCreateBuildKey(join(dir, "keys"), "globex");
});
after(async () => {
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const endpoint = () => new RegistryClient({ url: reg.url });

async function signed(name: string, tag: string, key: BuildKey, layer: string) {
  const image = await pushImage(reg.url, name, tag, { layer: Buffer.from(layer) });
  await signImage(endpoint(), {
    name,
    digest: image.digest,
    dockerReference: `${host}/${name}`,
    key: key.privateKey,
    imageManifest: { mediaType: ociManifestType, size: image.manifest.length },
  });
  return image;
}

function refusedAsInvalid(err: unknown): boolean {
  return isTabbifyError(err, "SIGNATURE_INVALID");
}

it("build keys are ECDSA P-256, 0600 in a 0700 dir, one per tenant, stable across loads", async () => {
  assert.equal((await stat(join(dir, "keys", "build-keys", "acme.pem"))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, "keys", "build-keys"))).mode & 0o777, 0o700);
  assert.equal(acmeKey.privateKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  assert.equal((await loadOrCreateBuildKey(join(dir, "keys"), "acme")).publicPem, acmeKey.publicPem);
  assert.notEqual(globexKey.publicPem, acmeKey.publicPem);
});

it("a signature is a cosign-layout referrer of the image, also tagged sha256-<hex>.sig", async () => {
  const image = await signed("acme/web", "v1", acmeKey, "web v1");
  const refs = await call(reg.url, `/v2/acme/web/referrers/${image.digest}`);
  const entries = (refs.json() as { manifests: { artifactType: string; digest: string }[] }).manifests;
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.artifactType, "application/vnd.dev.cosign.artifact.sig.v1+json");
  const byTag = await call(reg.url, `/v2/acme/web/manifests/${signatureTag(image.digest)}`);
  assert.equal(byTag.headers.get("docker-content-digest"), entries[0]!.digest);
  const manifest = byTag.json() as {
    layers: { mediaType: string; digest: string; annotations: Record<string, string> }[];
    subject: { digest: string };
  };
  assert.equal(manifest.subject.digest, image.digest);
  assert.equal(manifest.layers[0]!.mediaType, "application/vnd.dev.cosign.simplesigning.v1+json");
  assert.match(manifest.layers[0]!.annotations["dev.cosignproject.cosign/signature"]!, /^[A-Za-z0-9+/]+=*$/);
  const payload = JSON.parse(
    (await call(reg.url, `/v2/acme/web/blobs/${manifest.layers[0]!.digest}`)).body.toString(),
  );
  assert.deepEqual(payload, {
    critical: {
      identity: { "docker-reference": `${host}/acme/web` },
      image: { "docker-manifest-digest": image.digest },
      type: "cosign container image signature",
    },
    optional: null,
  });
  assert.equal(signatureMediaTypes.annotation, "dev.cosignproject.cosign/signature");
  const ok = await verifyImageSignature(endpoint(), {
    name: "acme/web",
    digest: image.digest,
    trustedKeys: [acmeKey.publicKey],
  });
  assert.equal(ok.signature, entries[0]!.digest);
});

it("refuses an unsigned image, another tenant's signature, and a signed image whose tag was moved", async () => {
  const unsigned = await pushImage(reg.url, "acme/hand", "v1", { layer: Buffer.from("pushed by hand") });
  await assert.rejects(
    verifyImageSignature(endpoint(), {
      name: "acme/hand",
      digest: unsigned.digest,
      trustedKeys: [acmeKey.publicKey],
    }),
    refusedAsInvalid,
  );
  const foreign = await signed("acme/foreign", "v1", globexKey, "signed by globex");
  await assert.rejects(
    verifyImageSignature(endpoint(), {
      name: "acme/foreign",
      digest: foreign.digest,
      trustedKeys: [acmeKey.publicKey],
    }),
    (err: unknown) => refusedAsInvalid(err) && /not by a trusted key/.test((err as Error).message),
  );
  await signed("acme/moved", "v1", acmeKey, "the signed one");
  const moved = await pushImage(reg.url, "acme/moved", "v1", { layer: Buffer.from("swapped in later") });
  const now = (await call(reg.url, "/v2/acme/moved/manifests/v1", { method: "HEAD" })).headers.get(
    "docker-content-digest",
  );
  assert.equal(now, moved.digest);
  await assert.rejects(
    verifyImageSignature(endpoint(), { name: "acme/moved", digest: now!, trustedKeys: [acmeKey.publicKey] }),
    refusedAsInvalid,
  );
});
