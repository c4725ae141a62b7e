// Garbage collection against both storage drivers: the local directory and S3 (s3rver).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { type S3rverHandle, startS3rver } from "../../test/support/s3rver.js";
import { parseDigest } from "../core/digest.js";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { StorageDriver } from "../storage/driver.js";
import { LocalDriver } from "../storage/local.js";
import { S3Driver } from "../storage/s3.js";
import { collectGarbage, type GcOptions, type GcReport } from "./gc.js";
import { layout } from "./layout.js";
import { RegistryService } from "./repository.js";

const hour = 3600 * 1000;
/** A clock two hours ahead: everything written so far is past the default grace period. */
const later = () => Date.now() + 2 * hour;

const ociManifest = "application/vnd.oci.image.manifest.v1+json";
const ociIndex = "application/vnd.oci.image.index.v1+json";

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isTabbifyError(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  });
}

/** Pushes through the service, as the HTTP handlers would. */
class Pusher {
  constructor(readonly service: RegistryService) {}

  async blob(repo: string, data: Buffer | string): Promise<Desc> {
    const buf = Buffer.from(data);
    const digest = sha256(buf);
    await this.service.pushBlob(repo, digest, Readable.from([buf]), buf.length);
    return { mediaType: "application/octet-stream", digest, size: buf.length };
  }

  private async manifest(repo: string, ref: string | undefined, json: object, type: string): Promise<Desc> {
    const body = Buffer.from(JSON.stringify(json));
    const { digest } = await this.service.putManifest(repo, ref ?? sha256(body), body, type);
    return { mediaType: type, digest, size: body.length };
  }

  /** An image with the shared `{}` config and the given layers; `ref` undefined pushes by digest. */
  async image(
    repo: string,
    ref: string | undefined,
    layers: string[],
    extra: Record<string, unknown> = {},
  ): Promise<Desc & { layers: string[]; config: string }> {
    const config = await this.blob(repo, "{}");
    const descs: Desc[] = [];
    for (const layer of layers) descs.push(await this.blob(repo, layer));
    const m = await this.manifest(
      repo,
      ref,
      {
        schemaVersion: 2,
        mediaType: ociManifest,
        config: { ...config, mediaType: "application/vnd.oci.image.config.v1+json" },
        layers: descs.map((d) => ({ ...d, mediaType: "application/vnd.oci.image.layer.v1.tar" })),
        ...extra,
      },
      ociManifest,
    );
    return { ...m, layers: descs.map((d) => d.digest), config: config.digest };
  }

  /** A signature-like artifact whose subject is `subject`. */
  referrer(repo: string, ref: string | undefined, subject: Desc, payload: string) {
    return this.image(repo, ref, [payload], {
      artifactType: "application/vnd.example.signature",
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    });
  }

  index(repo: string, ref: string | undefined, children: Desc[]): Promise<Desc> {
    return this.manifest(
      repo,
      ref,
      {
        schemaVersion: 2,
        mediaType: ociIndex,
        manifests: children.map((c) => ({
          mediaType: c.mediaType,
          digest: c.digest,
          size: c.size,
          platform: { os: "linux", architecture: c === children[0] ? "amd64" : "arm64" },
        })),
      },
      ociIndex,
    );
  }
}

/** Every file in the store with its bytes and modification time: "nothing changed" made checkable. */
async function snapshot(driver: StorageDriver): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (path: string) => {
    for (const child of await driver.list(path)) {
      const p = path ? `${path}/${child}` : child;
      const info = await driver.stat(p);
      if (!info) await walk(p);
      else out.set(p, `${info.modified.getTime()} ${(await driver.getContent(p))!.toString("base64")}`);
    }
  };
  await walk("");
  return out;
}

const removedBlobs = (r: GcReport) => r.blobsRemoved.map((b) => b.digest).sort();
const removedLinks = (r: GcReport) =>
  r.linksRemoved.map((l) => `${l.repository} ${l.digest} ${l.reason}`).sort();
const removedManifests = (r: GcReport) => r.manifestsRemoved.map((m) => `${m.repository} ${m.digest}`).sort();
const keptReason = (r: GcReport, repo: string, digest: string) =>
  r.repositories.find((x) => x.name === repo)?.manifests.find((m) => m.digest === digest)?.reason;

interface Store {
  driver: StorageDriver;
  cleanup(): Promise<void>;
}

function gcSuite(label: string, make: () => Promise<Store>): void {
  const withRegistry =
    (
      body: (ctx: {
        service: RegistryService;
        push: Pusher;
        driver: StorageDriver;
        staging: string;
      }) => Promise<void>,
    ) =>
    async () => {
      const store = await make();
      const staging = await mkdtemp(join(tmpdir(), "tabbify-gc-staging-"));
      const service = new RegistryService({ driver: store.driver, stagingDir: staging });
      try {
        await body({ service, push: new Pusher(service), driver: store.driver, staging });
      } finally {
        await rm(staging, { recursive: true, force: true });
        await store.cleanup();
      }
    };
  const gc = (service: RegistryService, opts: GcOptions = {}) => collectGarbage(service, opts);

  describe(`registry gc over ${label}`, () => {
    test(
      "sweeps a deleted image's own blobs and every link to them, keeps shared ones; a dry run reports the same and changes nothing",
      withRegistry(async ({ service, push, driver }) => {
        const a = await push.image("acme/app", "a", ["shared layer", "layer of a"]);
        const b = await push.image("acme/app", "b", ["shared layer", "layer of b"]);
        const other = await push.image("acme/other", "x", ["shared layer"]);
        // acme/lonely links b's layer without a manifest (a mount): its link must go with the blob.
        assert.ok(await service.mountBlob("acme/lonely", b.layers[1]!, "acme/app"));
        const orphan = await push.blob("acme/app", "pushed, never used by a manifest");
        // A link to data that is already gone (a sweep cut short between data and links).
        const missing = sha256("gone");
        await driver.putContent(layout.layerLink("acme/app", parseDigest(missing)), missing);
        await service.deleteManifest("acme/app", b.digest);

        const before = await snapshot(driver);
        const dry = await gc(service, { dryRun: true, now: later() });
        assert.deepEqual(await snapshot(driver), before, "a dry run changes nothing");
        const expectedBlobs = [b.digest, b.layers[1]!, orphan.digest].sort();
        assert.deepEqual(removedBlobs(dry), expectedBlobs);
        assert.deepEqual(
          removedLinks(dry),
          [
            `acme/app ${b.layers[1]} blob removed`,
            `acme/app ${orphan.digest} blob removed`,
            `acme/app ${missing} blob missing`,
            `acme/lonely ${b.layers[1]} blob removed`,
          ].sort(),
        );
        assert.equal(dry.dryRun, true);

        const real = await gc(service, { now: later() });
        assert.deepEqual(removedBlobs(real), expectedBlobs);
        assert.deepEqual(removedLinks(real), removedLinks(dry));
        assert.deepEqual(removedManifests(real), []);
        assert.equal(real.bytesFreed, b.size + "layer of b".length + orphan.size);
        assert.equal(real.blobsFound, 8);
        assert.equal(real.blobsKept, 5, "config, shared layer, a's layer, a's and other's manifests");
        assert.equal(real.blobsFound, real.blobsKept + real.blobsRemoved.length);
        assert.equal(keptReason(real, "acme/app", a.digest), "tag a");
        assert.equal(keptReason(real, "acme/other", other.digest), "tag x");
        assert.deepEqual(real.warnings, []);

        for (const gone of expectedBlobs) {
          assert.equal(await driver.stat(layout.blobData(parseDigest(gone))), null, gone);
        }
        await rejectsWith(service.statBlob("acme/app", b.layers[1]!), "BLOB_UNKNOWN");
        await rejectsWith(service.statBlob("acme/lonely", b.layers[1]!), "BLOB_UNKNOWN");
        assert.equal(await driver.stat(layout.layerLink("acme/lonely", parseDigest(b.layers[1]!))), null);
        assert.equal(await driver.stat(layout.layerLink("acme/app", parseDigest(missing))), null);
        assert.deepEqual(await driver.list("repositories/acme/lonely"), [], "no empty link dirs left");

        const kept = await service.getManifest("acme/app", "a");
        assert.equal(kept.digest, a.digest);
        for (const digest of [a.config, ...a.layers]) {
          const opened = await service.openBlob("acme/app", digest);
          const chunks: Buffer[] = [];
          for await (const c of opened.stream) chunks.push(c as Buffer);
          assert.equal(sha256(Buffer.concat(chunks)), digest);
        }
        assert.equal((await service.getManifest("acme/other", "x")).digest, other.digest);

        const again = await gc(service, { now: later() });
        assert.deepEqual(removedBlobs(again), [], "a second run finds nothing more");
        assert.deepEqual(removedLinks(again), []);
      }),
    );

    test(
      "unreferenced blobs stay until their data and every link to them are older than --min-age",
      withRegistry(async ({ service, push }) => {
        const fresh = await push.blob("acme/app", "just uploaded, its manifest is on the way");
        const now = await gc(service, {});
        assert.deepEqual(removedBlobs(now), []);
        assert.deepEqual(
          now.blobsYoung.map((b) => [b.digest, b.size]),
          [[fresh.digest, fresh.size]],
        );
        await service.statBlob("acme/app", fresh.digest);
        assert.deepEqual(removedBlobs(await gc(service, { now: Date.now() + 30 * 60 * 1000 })), []);
        assert.deepEqual(removedBlobs(await gc(service, { now: later() })), [fresh.digest]);

        // A blob whose data is old but which was just linked again (a mount, or a re-upload of
        // the same bytes, which keeps the data) is in use by a push in progress.
        const reused = await push.blob("acme/app", "old bytes, reused");
        // S3 times have one-second resolution: the waits leave room for it.
        await sleep(2600);
        const minAgeMs = 1500;
        assert.deepEqual(removedBlobs(await gc(service, { dryRun: true, minAgeMs })), [reused.digest]);
        assert.ok(await service.mountBlob("acme/next", reused.digest, "acme/app"));
        const linked = await gc(service, { minAgeMs });
        assert.deepEqual(removedBlobs(linked), []);
        assert.deepEqual(
          linked.blobsYoung.map((b) => b.digest),
          [reused.digest],
        );
        const past = await gc(service, { minAgeMs, now: Date.now() + 10_000 });
        assert.deepEqual(removedBlobs(past), [reused.digest]);
        assert.deepEqual(removedLinks(past), [
          `acme/app ${reused.digest} blob removed`,
          `acme/next ${reused.digest} blob removed`,
        ]);
      }),
    );

    test(
      "--delete-untagged removes what no tag reaches; index children, referrers of kept manifests, subjects of tagged referrers and fresh pushes stay",
      withRegistry(async ({ service, push, driver }) => {
        const repo = "acme/app";
        const tagged = await push.image(repo, "v1", ["layer of v1"]);
        const signature = await push.referrer(repo, undefined, tagged, "signature of v1");
        const amd64 = await push.image(repo, undefined, ["amd64 layer"]);
        const arm64 = await push.image(repo, undefined, ["arm64 layer"]);
        const multi = await push.index(repo, "multi", [amd64, arm64]);
        const untagged = await push.image(repo, undefined, ["layer of the untagged image"]);
        const untaggedSig = await push.referrer(repo, undefined, untagged, "signature of the untagged image");
        const subject = await push.image(repo, undefined, ["layer of an sbom's subject"]);
        const sbom = await push.referrer(repo, "sbom", subject, "sbom document");

        const keepAll = await gc(service, { now: later() });
        assert.deepEqual(removedManifests(keepAll), [], "without --delete-untagged every revision stays");
        assert.deepEqual(removedBlobs(keepAll), []);
        assert.equal(keptReason(keepAll, repo, untagged.digest), "untagged, kept without --delete-untagged");

        const dry = await gc(service, { deleteUntagged: true, dryRun: true, now: later() });
        const real = await gc(service, { deleteUntagged: true, now: later() });
        const expected = [untagged.digest, untaggedSig.digest].map((d) => `${repo} ${d}`).sort();
        assert.deepEqual(removedManifests(dry), expected);
        assert.deepEqual(removedManifests(real), expected);
        assert.deepEqual(
          removedBlobs(real),
          [untagged.digest, untaggedSig.digest, ...untagged.layers, ...untaggedSig.layers].sort(),
        );
        assert.deepEqual(removedBlobs(dry), removedBlobs(real));
        assert.equal(keptReason(real, repo, tagged.digest), "tag v1");
        assert.equal(keptReason(real, repo, signature.digest), `referrer of ${tagged.digest}`);
        assert.equal(keptReason(real, repo, amd64.digest), `child of ${multi.digest}`);
        assert.equal(keptReason(real, repo, arm64.digest), `child of ${multi.digest}`);
        assert.equal(keptReason(real, repo, sbom.digest), "tag sbom");
        assert.equal(keptReason(real, repo, subject.digest), `subject of ${sbom.digest}`);

        await rejectsWith(service.getManifest(repo, untagged.digest), "MANIFEST_UNKNOWN");
        await rejectsWith(service.getManifest(repo, untaggedSig.digest), "MANIFEST_UNKNOWN");
        assert.deepEqual(await driver.list(layout.referrersOf(repo, parseDigest(untagged.digest))), []);
        assert.deepEqual((await service.listTags(repo)).items, ["multi", "sbom", "v1"]);
        assert.deepEqual(
          (await service.referrers(repo, tagged.digest)).index.manifests.map((m) => m.digest),
          [signature.digest],
        );
        assert.equal(
          (await service.getManifest(repo, "multi", "application/vnd.oci.image.manifest.v1+json")).digest,
          amd64.digest,
        );
        for (const digest of [...amd64.layers, ...arm64.layers, ...subject.layers, ...signature.layers]) {
          await service.statBlob(repo, digest);
        }

        // Pushed by digest a moment ago: an index or a tag may be about to point at it.
        const fresh = await push.image(repo, undefined, ["layer of a push in progress"]);
        const now = await gc(service, { deleteUntagged: true });
        assert.deepEqual(removedManifests(now), []);
        assert.equal(keptReason(now, repo, fresh.digest), "pushed within --min-age");
        await service.statBlob(repo, fresh.layers[0]!);
      }),
    );

    test(
      "a manifest pushed while the collector runs keeps the old blobs it references",
      withRegistry(async ({ service: plain, driver, staging }) => {
        let hooked = false;
        let pushDuringGc: () => Promise<void> = async () => {};
        // The blob listing comes after the first mark: the manifest lands between the two.
        const spy = new Proxy(driver, {
          get(target, prop, receiver) {
            if (prop === "list") {
              return async (path: string) => {
                if (path === "blobs" && !hooked) {
                  hooked = true;
                  await pushDuringGc();
                }
                return target.list(path);
              };
            }
            const value = Reflect.get(target, prop, receiver);
            return typeof value === "function" ? value.bind(target) : value;
          },
        });
        const service = new RegistryService({ driver: spy, stagingDir: staging });
        const push = new Pusher(plain);
        const config = await push.blob("acme/app", "{}");
        const layer = await push.blob("acme/app", "a layer the client found already there");
        let digest = "";
        pushDuringGc = async () => {
          const body = Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: ociManifest,
              config: { ...config, mediaType: "application/vnd.oci.image.config.v1+json" },
              layers: [{ ...layer, mediaType: "application/vnd.oci.image.layer.v1.tar" }],
            }),
          );
          digest = (await plain.putManifest("acme/app", "late", body, ociManifest)).digest;
        };
        const report = await gc(service, { now: later() });
        assert.ok(hooked);
        assert.deepEqual(removedBlobs(report), []);
        assert.equal(keptReason(report, "acme/app", digest), "tag late");
        await plain.statBlob("acme/app", layer.digest);
        await plain.statBlob("acme/app", config.digest);
      }),
    );

    test(
      "a manifest without content is a warning; one whose content does not parse stops the run before any delete",
      withRegistry(async ({ service, push, driver }) => {
        const image = await push.image("acme/app", undefined, ["layer"]);
        const orphan = await push.blob("acme/app", "orphan");
        await driver.delete(layout.blobData(parseDigest(image.digest)).replace(/\/data$/, ""));
        const report = await gc(service, { dryRun: true, now: later() });
        assert.deepEqual(report.warnings, [
          `acme/app: manifest ${image.digest} has no content, so what it referenced is not known and not kept by it`,
        ]);
        assert.deepEqual(removedBlobs(report), [image.config, image.layers[0]!, orphan.digest].sort());

        const junk = Buffer.from("not a manifest");
        const bad = parseDigest(sha256(junk));
        await driver.putContent(layout.blobData(bad), junk);
        await driver.putContent(layout.revisionLink("acme/app", bad), sha256(junk));
        await rejectsWith(gc(service, { now: later() }), "GC_MANIFEST_UNREADABLE");
        assert.ok(await driver.stat(layout.blobData(parseDigest(orphan.digest))), "nothing was deleted");
      }),
    );

    test(
      "stale upload sessions go through the registry's own sweeper (24 h); a dry run only counts them",
      withRegistry(async ({ service, staging }) => {
        const session = await service.startUpload("acme/app");
        assert.equal((await gc(service, { now: later() })).uploadsRemoved, 0, "2 h old is not stale");
        const dayAndMore = Date.now() + 25 * hour;
        assert.equal((await gc(service, { dryRun: true, now: dayAndMore })).uploadsRemoved, 1);
        assert.deepEqual(await readdir(staging), [session.id]);
        assert.equal((await gc(service, { now: dayAndMore })).uploadsRemoved, 1);
        assert.deepEqual(await readdir(staging), []);
      }),
    );
  });
}

gcSuite("local", async () => {
  const root = await mkdtemp(join(tmpdir(), "tabbify-gc-local-"));
  return { driver: new LocalDriver(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

const BUCKET = "tabbify-gc-test";
let s3rver: S3rverHandle | undefined;
before(async () => {
  s3rver = await startS3rver([BUCKET]);
  Object.assign(process.env, s3rver.credentialsEnv);
});
after(async () => {
  await s3rver?.stop();
});

gcSuite("s3 (s3rver)", async () => {
  // Every test gets its own prefix in the one bucket: fresh, empty storage without a new server.
  const prefix = `gc-${randomBytes(6).toString("hex")}/`;
  const driver = new S3Driver({ bucket: BUCKET, endpoint: s3rver!.endpoint, forcePathStyle: true, prefix });
  return {
    driver,
    cleanup: async () => {
      await driver.delete(prefix.slice(0, -1)).catch(() => {});
      driver.close();
    },
  };
});
