// Issue 14 §3, attacks on verify_signature run through the deploy pipeline: a real registry with
// auth on, real registry tokens, the node's real signer and verifier (tenant build keys in a data
// dir). The builder is an in-test SupervisorClient that pushes real images to the registry, so
// each attack is what someone with push rights (a hand push, a compromised CI, another tenant's
// key) can put under the deploy's digest. Under `require` the deploy fails SIGNATURE_INVALID and
// no target is sent anything; under `warn` it goes on and says why.
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadOrCreateBuildKey } from "../../src/auth/build-keys.js";
import { deriveAppUla } from "../../src/core/address.js";
import { nodeImageSignatures, parseSignaturePolicy } from "../../src/node/image-signatures.js";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import type { ImageSignatures, RegistryAccess } from "../../src/pipeline/deps.js";
import {
  type BuildRequest,
  type BuildResult,
  DeployExecutor,
  MemoryDeployStore,
  type SupervisorAppStatus,
  type SupervisorClient,
  type SupervisorDeployReply,
  type SupervisorDeployRequest,
} from "../../src/pipeline/executor.js";
import { RegistryClient } from "../../src/registry/client.js";
import { signImage } from "../../src/registry/signatures.js";
import {
  ociManifestType,
  pushImage,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";

const TENANT = "acme";
const APP = "0191e7c2-1111-7222-8333-444455556666";
const SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

let auth: TestAuth;
let reg: TestRegistry;
let access: RegistryAccess;
let nodeData: string;
let host: string;

before(async () => {
  auth = await startTestAuth();
  reg = await startTestRegistry({ authUrl: auth.url });
  host = new URL(reg.url).host;
  access = await tenantRegistryAccess({ registryHost: host, authDataDir: auth.dataDir });
  nodeData = await mkdtemp(join(tmpdir(), "gitreg-sig-node-"));
});
after(async () => {
  await reg?.close();
  await auth?.close();
  if (nodeData) await rm(nodeData, { recursive: true, force: true });
});

/** What a builder (or whoever has the push token) leaves under the deploy's tag. */
type Push = (pushToken: string, layer: string) => Promise<string>;

class PushingBuilder implements SupervisorClient {
  deploys: SupervisorDeployRequest[] = [];
  constructor(private readonly push: Push) {}
  async build(request: BuildRequest): Promise<BuildResult> {
    const digest = await this.push(request.push_token!, `built ${Math.random()}`);
    return { image_ref: `${request.image_repository}:${SHA}`, digest, commit_sha: SHA };
  }
  async deploy(_app: string, request: SupervisorDeployRequest): Promise<SupervisorDeployReply> {
    this.deploys.push(request);
    return { state: "running", app_ula: deriveAppUla(APP) };
  }
  async app(appUuid: string): Promise<SupervisorAppStatus | null> {
    const last = this.deploys.at(-1);
    return last ? { state: "running", app_ula: deriveAppUla(appUuid), digest: last.digest! } : null;
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const repo = `${TENANT}/${APP}`;

/** Pushes one image under the commit tag; returns its digest. */
const handPush: Push = async (token, layer) =>
  (await pushImage(reg.url, repo, SHA, { layer: Buffer.from(layer), headers: bearer(token) })).digest;

async function deploy(
  builder: PushingBuilder,
  signatures: ImageSignatures,
): Promise<Awaited<ReturnType<DeployExecutor["run"]>>> {
  const deps = {
    store: new MemoryDeployStore(),
    roster: {
      supervisors: async () => [
        { name: "alpha", address: "http://alpha.invalid", tags: ["supervisor", "docker"] },
      ],
    },
    supervisorClient: () => builder,
    manifests: { fetchManifest: async () => `[app]\nid = "${APP}"\nname = "web"\n` },
    registry: access,
    signatures,
  };
  return new DeployExecutor(deps).run({
    trigger: "api",
    repoUrl: "https://git.example/acme/web.git",
    ref: SHA,
    sha: SHA,
    tenant: TENANT,
  });
}

/** The node's signer and verifier, with `sign` replaced by what the scenario's pusher does. */
function signaturesWith(policy: string, sign?: ImageSignatures["sign"]): ImageSignatures {
  const real = nodeImageSignatures({
    registry: access,
    dataDir: nodeData,
    policies: parseSignaturePolicy(policy),
  });
  return { ...real, ...(sign ? { sign } : {}) };
}
const noSignature: ImageSignatures["sign"] = async () => "";

/** Signs the way the node does, but with `key`. */
function signWith(key: KeyObject): ImageSignatures["sign"] {
  return async (_tenant, appUuid, digest) => {
    const token = await access.pushToken(TENANT, appUuid);
    const manifest = await fetch(`${reg.url}/v2/${repo}/manifests/${digest}`, {
      headers: { ...bearer(token), accept: ociManifestType },
    });
    const size = (await manifest.arrayBuffer()).byteLength;
    const signed = await signImage(new RegistryClient({ url: reg.url, token }), {
      name: repo,
      digest,
      dockerReference: `${host}/${repo}`,
      key,
      imageManifest: { mediaType: ociManifestType, size },
    });
    return signed.digest;
  };
}

function stepData(record: { events: { step?: string; type: string; data?: Record<string, unknown> }[] }) {
  return record.events.find((e) => e.step === "verify_signature" && e.type === "step_finished")?.data;
}

describe("verify_signature in the pipeline", () => {
  it("an image the node signed with the tenant's build key deploys under require", async () => {
    const builder = new PushingBuilder(handPush);
    const record = await deploy(builder, signaturesWith("prod=require"));
    assert.equal(record.status, "succeeded", JSON.stringify(record.error));
    assert.equal(stepData(record)?.verified, true);
    assert.equal(builder.deploys.length, 1);
  });

  it("require: an unsigned image pushed by hand is refused, SIGNATURE_INVALID, and no target is touched", async () => {
    const builder = new PushingBuilder(handPush);
    const record = await deploy(builder, signaturesWith("prod=require", noSignature));
    assert.equal(record.status, "failed");
    assert.equal(record.error?.code, "SIGNATURE_INVALID");
    assert.match(record.error?.message ?? "", /no signature by a trusted key/);
    assert.equal(builder.deploys.length, 0, "a target was sent the unsigned image");
    assert.ok(!record.events.some((e) => e.step === "fan_out"), "fan_out ran");
  });

  it("require: an image signed with another tenant's build key is refused", async () => {
    const globex = await loadOrCreateBuildKey(nodeData, "globex");
    const builder = new PushingBuilder(handPush);
    const record = await deploy(builder, signaturesWith("prod=require", signWith(globex.privateKey)));
    assert.equal(record.status, "failed");
    assert.equal(record.error?.code, "SIGNATURE_INVALID");
    assert.match(record.error?.message ?? "", /not by a trusted key/);
    assert.equal(builder.deploys.length, 0);
  });

  it("require: a signed image whose tag was moved to another image before the deploy is refused", async () => {
    const real = signaturesWith("prod=require");
    const movingPush: Push = async (token, layer) => {
      const first = await handPush(token, layer);
      await real.sign(TENANT, APP, first);
      // The tag now names an image nobody signed; the builder reports what the tag names.
      return handPush(token, `${layer} swapped`);
    };
    const builder = new PushingBuilder(movingPush);
    const record = await deploy(builder, signaturesWith("prod=require", noSignature));
    assert.equal(record.status, "failed");
    assert.equal(record.error?.code, "SIGNATURE_INVALID");
    assert.equal(builder.deploys.length, 0);
  });

  it("warn: the same unsigned image deploys, and the step records that it was not verified and why", async () => {
    const builder = new PushingBuilder(handPush);
    const record = await deploy(builder, signaturesWith("prod=warn", noSignature));
    assert.equal(record.status, "succeeded");
    const data = stepData(record);
    assert.equal(data?.verified, false);
    assert.equal(data?.policy, "warn");
    assert.match(String(data?.reason), /SIGNATURE_INVALID|no signature by a trusted key/);
    assert.equal(builder.deploys.length, 1);
  });

  it("a key the operator drops in trusted-keys/<tenant>/ is trusted", async () => {
    const ci = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await mkdir(join(nodeData, "trusted-keys", TENANT), { recursive: true });
    await writeFile(
      join(nodeData, "trusted-keys", TENANT, "outside-ci.pem"),
      ci.publicKey.export({ type: "spki", format: "pem" }),
    );
    const builder = new PushingBuilder(handPush);
    const record = await deploy(builder, signaturesWith("prod=require", signWith(ci.privateKey)));
    assert.equal(record.status, "succeeded", JSON.stringify(record.error));
    assert.equal(stepData(record)?.verified, true);
  });

  it("the policy flag refuses garbage; prod defaults to require, other environments to warn", async () => {
    assert.throws(() => parseSignaturePolicy("prod=maybe"), /require or ENV=warn/);
    assert.throws(() => parseSignaturePolicy("--x=warn"), /require or ENV=warn/);
    assert.equal(signaturesWith("").policy("prod"), "require");
    assert.equal(signaturesWith("").policy("test"), "warn");
  });
});
