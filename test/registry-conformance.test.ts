// OCI Distribution Spec v1.1 conformance of `tabbify registry` (anonymous mode), in-process on
// port 0: pull, push (monolithic, single-POST, chunked, mount), manifests, discovery, referrers,
// deletion, and the bad-input list of issue 2 (each: the spec's status + code, nothing stored).
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  call,
  emptyConfig,
  errorCode,
  imageManifest,
  ociIndexType,
  ociManifestType,
  pushBlob,
  pushImage,
  rawCall,
  sha256,
  sha512,
  startTestRegistry,
  type TestRegistry,
} from "./registry-helpers.js";

let reg: TestRegistry;
let url: string;

before(async () => {
  reg = await startTestRegistry();
  url = reg.url;
});
after(async () => {
  await reg.close();
});

async function stagedUploads(): Promise<string[]> {
  return readdir(join(reg.dataDir, "_tmp", "uploads")).catch(() => []);
}

async function blobFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else out.push(join(dir, e.name));
    }
  };
  await walk(join(reg.dataDir, "blobs"));
  return out;
}

describe("base and errors", () => {
  it("GET /v2/ answers 200 with the API version header", async () => {
    const r = await call(url, "/v2/");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("docker-distribution-api-version"), "registry/2.0");
  });

  it("unknown paths get a 404 in the OCI error shape", async () => {
    const r = await call(url, "/v2/foo/nothing-here");
    assert.equal(r.status, 404);
    assert.ok(errorCode(r));
  });

  it("unsupported methods get 405 UNSUPPORTED", async () => {
    const r = await call(url, "/v2/foo/tags/list", { method: "DELETE" });
    assert.equal(r.status, 405);
    assert.equal(errorCode(r), "UNSUPPORTED");
  });
});

describe("blob push and pull", () => {
  it("monolithic POST then PUT, then HEAD/GET with digest and length headers", async () => {
    const data = Buffer.from("monolithic blob content");
    const digest = sha256(data);
    const start = await call(url, "/v2/mono/app/blobs/uploads/", { method: "POST" });
    assert.equal(start.status, 202);
    const location = start.headers.get("location")!;
    assert.match(location, /^\/v2\/mono\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.equal(start.headers.get("range"), "0-0");
    assert.equal(start.headers.get("docker-upload-uuid"), location.split("/").pop());
    const put = await call(url, `${location}?digest=${digest}`, {
      method: "PUT",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("location"), `/v2/mono/app/blobs/${digest}`);
    assert.equal(put.headers.get("docker-content-digest"), digest);

    const head = await call(url, `/v2/mono/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(data.length));
    assert.equal(head.headers.get("docker-content-digest"), digest);
    assert.equal(head.body.length, 0);
    const get = await call(url, `/v2/mono/app/blobs/${digest}`);
    assert.equal(get.status, 200);
    assert.deepEqual(get.body, data);
    assert.equal(get.headers.get("content-length"), String(data.length));
    assert.ok(!(await stagedUploads()).includes(location.split("/").pop()!), "the finished upload is gone");
  });

  it("single-request POST ?digest= stores the blob (201)", async () => {
    const digest = await pushBlob(url, "single/post", "one shot");
    const get = await call(url, `/v2/single/post/blobs/${digest}`);
    assert.equal(get.body.toString(), "one shot");
  });

  it("serves Range requests with 206 and Content-Range, 416 RANGE_INVALID past the end", async () => {
    const data = Buffer.from("0123456789");
    const digest = await pushBlob(url, "ranges/app", data);
    const part = await call(url, `/v2/ranges/app/blobs/${digest}`, { headers: { range: "bytes=2-5" } });
    assert.equal(part.status, 206);
    assert.equal(part.body.toString(), "2345");
    assert.equal(part.headers.get("content-range"), "bytes 2-5/10");
    assert.equal(part.headers.get("content-length"), "4");
    const open = await call(url, `/v2/ranges/app/blobs/${digest}`, { headers: { range: "bytes=7-" } });
    assert.equal(open.body.toString(), "789");
    const suffix = await call(url, `/v2/ranges/app/blobs/${digest}`, { headers: { range: "bytes=-3" } });
    assert.equal(suffix.body.toString(), "789");
    const bad = await call(url, `/v2/ranges/app/blobs/${digest}`, { headers: { range: "bytes=10-20" } });
    assert.equal(bad.status, 416);
    assert.equal(errorCode(bad), "RANGE_INVALID");
    assert.equal(bad.headers.get("content-range"), "bytes */10");
  });

  it("chunked PATCH uploads report progress, refuse out-of-order chunks with 416, and complete", async () => {
    const data = Buffer.from("chunk-one|chunk-two|chunk-three");
    const digest = sha256(data);
    const start = await call(url, "/v2/chunked/app/blobs/uploads/", { method: "POST" });
    let location = start.headers.get("location")!;
    const first = data.subarray(0, 10);
    const p1 = await call(url, location, {
      method: "PATCH",
      body: first,
      headers: { "content-type": "application/octet-stream", "content-range": "0-9" },
    });
    assert.equal(p1.status, 202);
    assert.equal(p1.headers.get("range"), "0-9");
    location = p1.headers.get("location")!;

    const skipped = await call(url, location, {
      method: "PATCH",
      body: data.subarray(15, 20),
      headers: { "content-type": "application/octet-stream", "content-range": "15-19" },
    });
    assert.equal(skipped.status, 416);
    assert.equal(errorCode(skipped), "RANGE_INVALID");
    assert.equal(skipped.headers.get("range"), "0-9");

    const status = await call(url, location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), "0-9");
    assert.equal(status.headers.get("location"), location);

    const p2 = await call(url, location, {
      method: "PATCH",
      body: data.subarray(10, 20),
      headers: { "content-type": "application/octet-stream", "content-range": "10-19" },
    });
    assert.equal(p2.status, 202);
    assert.equal(p2.headers.get("range"), "0-19");
    // The last chunk rides on the closing PUT.
    const put = await call(url, `${location}?digest=${digest}`, {
      method: "PUT",
      body: data.subarray(20),
      headers: { "content-type": "application/octet-stream", "content-range": `20-${data.length - 1}` },
    });
    assert.equal(put.status, 201, put.body.toString());
    const get = await call(url, `/v2/chunked/app/blobs/${digest}`);
    assert.deepEqual(get.body, data);
  });

  it("a chunk whose length differs from its Content-Range is refused and not kept", async () => {
    const start = await call(url, "/v2/chunked/short/blobs/uploads/", { method: "POST" });
    const location = start.headers.get("location")!;
    const r = await call(url, location, {
      method: "PATCH",
      body: "abc",
      headers: { "content-type": "application/octet-stream", "content-range": "0-9" },
    });
    assert.equal(r.status, 400);
    assert.equal(errorCode(r), "SIZE_INVALID");
    const status = await call(url, location);
    assert.equal(status.headers.get("range"), "0-0");
  });

  it("streamed PATCH without Content-Range (docker's way) appends the whole body", async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const digest = sha256(data);
    const start = await call(url, "/v2/streamed/app/blobs/uploads/", { method: "POST" });
    const patch = await call(url, start.headers.get("location")!, {
      method: "PATCH",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(patch.headers.get("range"), `0-${data.length - 1}`);
    const put = await call(url, `${patch.headers.get("location")}?digest=${digest}`, { method: "PUT" });
    assert.equal(put.status, 201);
    const head = await call(url, `/v2/streamed/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.headers.get("content-length"), String(data.length));
  });

  it("cancels an upload with DELETE (204), after which it is unknown (404 BLOB_UPLOAD_UNKNOWN)", async () => {
    const start = await call(url, "/v2/cancel/app/blobs/uploads/", { method: "POST" });
    const location = start.headers.get("location")!;
    await call(url, location, { method: "PATCH", body: "partial", headers: { "content-type": "x/y" } });
    const del = await call(url, location, { method: "DELETE" });
    assert.equal(del.status, 204);
    const status = await call(url, location);
    assert.equal(status.status, 404);
    assert.equal(errorCode(status), "BLOB_UPLOAD_UNKNOWN");
    const unknown = await call(url, "/v2/cancel/app/blobs/uploads/not-an-upload-id");
    assert.equal(unknown.status, 404);
    assert.equal(errorCode(unknown), "BLOB_UPLOAD_UNKNOWN");
  });

  it("an upload session belongs to its repository", async () => {
    const start = await call(url, "/v2/owner/app/blobs/uploads/", { method: "POST" });
    const id = start.headers.get("docker-upload-uuid")!;
    const r = await call(url, `/v2/other/app/blobs/uploads/${id}`);
    assert.equal(r.status, 404);
    assert.equal(errorCode(r), "BLOB_UPLOAD_UNKNOWN");
  });

  it("verifies sha512 digests", async () => {
    const data = Buffer.from("sha512 content");
    const digest = sha512(data);
    const start = await call(url, "/v2/sha512/app/blobs/uploads/", { method: "POST" });
    const put = await call(url, `${start.headers.get("location")}?digest=${digest}`, {
      method: "PUT",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("docker-content-digest"), digest);
    const get = await call(url, `/v2/sha512/app/blobs/${digest}`);
    assert.deepEqual(get.body, data);
    const single = await call(url, `/v2/sha512/app/blobs/uploads/?digest=${sha512("other")}`, {
      method: "POST",
      body: "other",
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(single.status, 201);
  });

  it("blobs are deduplicated across repositories but readable only where linked", async () => {
    const data = Buffer.from("shared layer bytes");
    const before = (await blobFiles()).length;
    const digest = await pushBlob(url, "dedupe/one", data);
    assert.equal((await call(url, `/v2/dedupe/two/blobs/${digest}`, { method: "HEAD" })).status, 404);
    await pushBlob(url, "dedupe/two", data);
    assert.equal((await blobFiles()).length, before + 1);
    assert.equal((await call(url, `/v2/dedupe/two/blobs/${digest}`, { method: "HEAD" })).status, 200);
  });

  it("mounts a blob from another repository (201), or falls back to an upload session (202)", async () => {
    const digest = await pushBlob(url, "mount/source", "mountable");
    const miss = await call(url, `/v2/mount/target/blobs/${digest}`, { method: "HEAD" });
    assert.equal(miss.status, 404);
    const mounted = await call(url, `/v2/mount/target/blobs/uploads/?mount=${digest}&from=mount/source`, {
      method: "POST",
    });
    assert.equal(mounted.status, 201);
    assert.equal(mounted.headers.get("location"), `/v2/mount/target/blobs/${digest}`);
    assert.equal(mounted.headers.get("docker-content-digest"), digest);
    const get = await call(url, `/v2/mount/target/blobs/${digest}`);
    assert.equal(get.body.toString(), "mountable");

    const fallback = await call(url, `/v2/mount/other/blobs/uploads/?mount=${digest}&from=mount/nowhere`, {
      method: "POST",
    });
    assert.equal(fallback.status, 202);
    assert.match(fallback.headers.get("location")!, /^\/v2\/mount\/other\/blobs\/uploads\//);
    assert.equal((await call(url, `/v2/mount/other/blobs/${digest}`, { method: "HEAD" })).status, 404);
  });

  it("deletes a blob from a repository (202), then it is unknown there (404 BLOB_UNKNOWN)", async () => {
    const digest = await pushBlob(url, "delete/blob", "to delete");
    const del = await call(url, `/v2/delete/blob/blobs/${digest}`, { method: "DELETE" });
    assert.equal(del.status, 202);
    const head = await call(url, `/v2/delete/blob/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 404);
    const get = await call(url, `/v2/delete/blob/blobs/${digest}`);
    assert.equal(errorCode(get), "BLOB_UNKNOWN");
    const again = await call(url, `/v2/delete/blob/blobs/${digest}`, { method: "DELETE" });
    assert.equal(again.status, 404);
  });
});

describe("manifests", () => {
  it("stores and serves an OCI image manifest by tag and by digest (GET and HEAD)", async () => {
    const { digest, manifest } = await pushImage(url, "man/app", "v1");
    for (const ref of ["v1", digest]) {
      const get = await call(url, `/v2/man/app/manifests/${ref}`, { headers: { accept: ociManifestType } });
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, manifest);
      assert.equal(get.headers.get("content-type"), ociManifestType);
      assert.equal(get.headers.get("docker-content-digest"), digest);
      assert.equal(get.headers.get("content-length"), String(manifest.length));
      const head = await call(url, `/v2/man/app/manifests/${ref}`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(manifest.length));
      assert.equal(head.headers.get("docker-content-digest"), digest);
      assert.equal(head.body.length, 0);
    }
    const missing = await call(url, "/v2/man/app/manifests/nope");
    assert.equal(missing.status, 404);
    assert.equal(errorCode(missing), "MANIFEST_UNKNOWN");
  });

  it("PUT by digest stores the manifest and returns Location and Docker-Content-Digest", async () => {
    const config = await pushBlob(url, "man/bydigest", emptyConfig);
    const manifest = imageManifest({ digest: config, size: emptyConfig.length }, []);
    const digest = sha256(manifest);
    const put = await call(url, `/v2/man/bydigest/manifests/${digest}`, {
      method: "PUT",
      body: manifest,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("location"), `/v2/man/bydigest/manifests/${digest}`);
    assert.equal(put.headers.get("docker-content-digest"), digest);
  });

  it("serves Docker schema2 manifests and manifest lists with their media types", async () => {
    const dockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    const dockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const configDigest = await pushBlob(url, "docker/app", config);
    const layer = Buffer.from("docker layer");
    const layerDigest = await pushBlob(url, "docker/app", layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: dockerManifest,
        config: {
          mediaType: "application/vnd.docker.container.image.v1+json",
          size: config.length,
          digest: configDigest,
        },
        layers: [
          {
            mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
            size: layer.length,
            digest: layerDigest,
          },
        ],
      }),
    );
    const put = await call(url, "/v2/docker/app/manifests/amd64", {
      method: "PUT",
      body: manifest,
      headers: { "content-type": dockerManifest },
    });
    assert.equal(put.status, 201);
    const list = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: dockerList,
        manifests: [
          {
            mediaType: dockerManifest,
            size: manifest.length,
            digest: sha256(manifest),
            platform: { architecture: "amd64", os: "linux" },
          },
        ],
      }),
    );
    const putList = await call(url, "/v2/docker/app/manifests/latest", {
      method: "PUT",
      body: list,
      headers: { "content-type": dockerList },
    });
    assert.equal(putList.status, 201);
    const getList = await call(url, "/v2/docker/app/manifests/latest", {
      headers: { accept: `${dockerManifest}, ${dockerList}, ${ociManifestType}, ${ociIndexType}` },
    });
    assert.equal(getList.headers.get("content-type"), dockerList);
    assert.deepEqual(getList.body, list);
    // A client that cannot read lists gets the linux/amd64 image, as docker expects.
    const getImage = await call(url, "/v2/docker/app/manifests/latest", {
      headers: { accept: dockerManifest },
    });
    assert.equal(getImage.headers.get("content-type"), dockerManifest);
    assert.equal(getImage.headers.get("docker-content-digest"), sha256(manifest));
    assert.deepEqual(getImage.body, manifest);
  });

  it("an OCI index needs its child manifests in the repository (MANIFEST_BLOB_UNKNOWN)", async () => {
    const child = await pushImage(url, "index/app", "child");
    const index = (digests: string[]) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: ociIndexType,
          manifests: digests.map((d) => ({
            mediaType: ociManifestType,
            digest: d,
            size: child.manifest.length,
          })),
        }),
      );
    const good = await call(url, "/v2/index/app/manifests/multi", {
      method: "PUT",
      body: index([child.digest]),
      headers: { "content-type": ociIndexType },
    });
    assert.equal(good.status, 201);
    const get = await call(url, "/v2/index/app/manifests/multi", { headers: { accept: ociIndexType } });
    assert.equal(get.headers.get("content-type"), ociIndexType);
    const bad = await call(url, "/v2/index/app/manifests/broken", {
      method: "PUT",
      body: index([sha256("no such manifest")]),
      headers: { "content-type": ociIndexType },
    });
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), "MANIFEST_BLOB_UNKNOWN");
  });

  it("a manifest referencing an unknown blob is MANIFEST_BLOB_UNKNOWN and not stored", async () => {
    const config = await pushBlob(url, "man/missing", emptyConfig);
    const manifest = imageManifest({ digest: config, size: 2 }, [
      { digest: sha256("never pushed"), size: 12 },
    ]);
    const put = await call(url, "/v2/man/missing/manifests/v1", {
      method: "PUT",
      body: manifest,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(put.status, 400);
    assert.equal(errorCode(put), "MANIFEST_BLOB_UNKNOWN");
    assert.equal((await call(url, "/v2/man/missing/manifests/v1")).status, 404);
    assert.equal((await call(url, `/v2/man/missing/manifests/${sha256(manifest)}`)).status, 404);
  });

  it("a blob linked only in another repository does not satisfy a manifest", async () => {
    const layer = await pushBlob(url, "man/elsewhere", "elsewhere layer");
    const config = await pushBlob(url, "man/here", emptyConfig);
    const put = await call(url, "/v2/man/here/manifests/v1", {
      method: "PUT",
      body: imageManifest({ digest: config, size: 2 }, [{ digest: layer, size: 15 }]),
      headers: { "content-type": ociManifestType },
    });
    assert.equal(errorCode(put), "MANIFEST_BLOB_UNKNOWN");
  });

  it("refuses manifests that are not JSON, not a manifest, or disagree with their digest", async () => {
    const cases: [string, Buffer | string, string, number, string][] = [
      ["notjson", "this is not json", ociManifestType, 400, "MANIFEST_INVALID"],
      ["array", "[1,2]", ociManifestType, 400, "MANIFEST_INVALID"],
      ["schema1", '{"schemaVersion":1}', ociManifestType, 400, "MANIFEST_INVALID"],
      [
        "nolayers",
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}',
        ociManifestType,
        400,
        "MANIFEST_INVALID",
      ],
      [
        "baddigest",
        JSON.stringify({
          schemaVersion: 2,
          mediaType: ociManifestType,
          config: { mediaType: "x/y", digest: "sha256:nothex", size: 1 },
          layers: [],
        }),
        ociManifestType,
        400,
        "DIGEST_INVALID",
      ],
      [
        "mismatch",
        JSON.stringify({ schemaVersion: 2, mediaType: ociIndexType, manifests: [] }),
        ociManifestType,
        400,
        "MANIFEST_INVALID",
      ],
      ["unknowntype", '{"schemaVersion":2,"mediaType":"text/plain"}', "text/plain", 400, "MANIFEST_INVALID"],
    ];
    for (const [tag, body, type, status, code] of cases) {
      const r = await call(url, `/v2/bad/manifests/manifests/${tag}`, {
        method: "PUT",
        body,
        headers: { "content-type": type },
      });
      assert.equal(r.status, status, `${tag}: ${r.body.toString()}`);
      assert.equal(errorCode(r), code, tag);
      assert.equal((await call(url, `/v2/bad/manifests/manifests/${tag}`)).status, 404);
    }
    const wrongDigest = await call(url, `/v2/bad/manifests/manifests/${sha256("other")}`, {
      method: "PUT",
      body: JSON.stringify({ schemaVersion: 2, mediaType: ociIndexType, manifests: [] }),
      headers: { "content-type": ociIndexType },
    });
    assert.equal(wrongDigest.status, 400);
    assert.equal(errorCode(wrongDigest), "DIGEST_INVALID");
    const badTag = await call(url, "/v2/bad/manifests/manifests/-dash-first", {
      method: "PUT",
      body: "{}",
      headers: { "content-type": ociManifestType },
    });
    assert.equal(badTag.status, 400);
  });

  it("refuses manifests over 4 MiB with 413 SIZE_INVALID", async () => {
    const huge = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const r = await call(url, "/v2/bad/huge/manifests/v1", {
      method: "PUT",
      body: huge,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(r.status, 413);
    assert.equal(errorCode(r), "SIZE_INVALID");
    assert.equal((await call(url, "/v2/bad/huge/manifests/v1")).status, 404);
  });

  it("deletes tags (202) and manifests by digest (202, taking their tags along)", async () => {
    const { digest } = await pushImage(url, "del/app", "v1");
    const tag2 = await call(url, "/v2/del/app/manifests/v2", {
      method: "PUT",
      body: (await call(url, "/v2/del/app/manifests/v1")).body,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(tag2.status, 201);
    const delTag = await call(url, "/v2/del/app/manifests/v1", { method: "DELETE" });
    assert.equal(delTag.status, 202);
    assert.equal((await call(url, "/v2/del/app/manifests/v1")).status, 404);
    assert.equal((await call(url, `/v2/del/app/manifests/${digest}`)).status, 200);
    const delManifest = await call(url, `/v2/del/app/manifests/${digest}`, { method: "DELETE" });
    assert.equal(delManifest.status, 202);
    assert.equal((await call(url, `/v2/del/app/manifests/${digest}`)).status, 404);
    assert.equal((await call(url, "/v2/del/app/manifests/v2")).status, 404);
    const tags = await call(url, "/v2/del/app/tags/list");
    assert.deepEqual((tags.json() as { tags: string[] }).tags, []);
    const again = await call(url, `/v2/del/app/manifests/${digest}`, { method: "DELETE" });
    assert.equal(again.status, 404);
    assert.equal(errorCode(again), "MANIFEST_UNKNOWN");
  });
});

describe("discovery", () => {
  it("lists tags sorted, with n/last pagination and a Link header", async () => {
    for (const tag of ["b", "a", "c", "latest", "1.0"]) await pushImage(url, "tags/app", tag);
    const all = await call(url, "/v2/tags/app/tags/list");
    assert.equal(all.status, 200);
    assert.deepEqual(all.json(), { name: "tags/app", tags: ["1.0", "a", "b", "c", "latest"] });
    assert.equal(all.headers.get("link"), null);
    const first = await call(url, "/v2/tags/app/tags/list?n=2");
    assert.deepEqual((first.json() as { tags: string[] }).tags, ["1.0", "a"]);
    assert.equal(first.headers.get("link"), '</v2/tags/app/tags/list?n=2&last=a>; rel="next"');
    const second = await call(url, "/v2/tags/app/tags/list?n=2&last=a");
    assert.deepEqual((second.json() as { tags: string[] }).tags, ["b", "c"]);
    const third = await call(url, "/v2/tags/app/tags/list?n=2&last=c");
    assert.deepEqual((third.json() as { tags: string[] }).tags, ["latest"]);
    assert.equal(third.headers.get("link"), null);
    const zero = await call(url, "/v2/tags/app/tags/list?n=0");
    assert.deepEqual((zero.json() as { tags: string[] }).tags, []);
    const badN = await call(url, "/v2/tags/app/tags/list?n=-1");
    assert.equal(badN.status, 400);
    const unknown = await call(url, "/v2/tags/nothing/tags/list");
    assert.equal(unknown.status, 404);
    assert.equal(errorCode(unknown), "NAME_UNKNOWN");
  });

  it("serves _catalog in dev mode, sorted and paginated", async () => {
    await pushImage(url, "catalog/zeta", "v1");
    await pushImage(url, "catalog/alpha", "v1");
    const all = await call(url, "/v2/_catalog");
    const repos = (all.json() as { repositories: string[] }).repositories;
    assert.ok(repos.includes("catalog/alpha") && repos.includes("catalog/zeta"));
    assert.deepEqual(repos, [...repos].sort());
    const page = await call(url, "/v2/_catalog?n=1&last=catalog/alpha");
    assert.deepEqual((page.json() as { repositories: string[] }).repositories, ["catalog/zeta"]);
    assert.match(page.headers.get("link") ?? "", /^<\/v2\/_catalog\?n=1&last=catalog%2Fzeta>; rel="next"$/);
  });
});

describe("referrers and artifacts", () => {
  it("records subjects (OCI-Subject), lists referrers with artifactType and annotations, filters", async () => {
    const subject = await pushImage(url, "refs/app", "v1");
    const subjectDescriptor = {
      mediaType: ociManifestType,
      digest: subject.digest,
      size: subject.manifest.length,
    };
    const sig = await pushImage(url, "refs/app", "sig", {
      layer: Buffer.from("signature"),
      extra: {
        artifactType: "application/vnd.example.signature",
        subject: subjectDescriptor,
        annotations: { "org.example.signed-by": "alice" },
      },
    });
    const sbom = await pushImage(url, "refs/app", "sbom", {
      layer: Buffer.from("sbom"),
      configType: "application/vnd.example.sbom.config",
      extra: { subject: subjectDescriptor },
    });
    const put = await call(url, "/v2/refs/app/manifests/sig", {
      method: "PUT",
      body: sig.manifest,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(put.headers.get("oci-subject"), subject.digest);

    const list = await call(url, `/v2/refs/app/referrers/${subject.digest}`);
    assert.equal(list.status, 200);
    assert.equal(list.headers.get("content-type"), ociIndexType);
    const index = list.json() as {
      mediaType: string;
      schemaVersion: number;
      manifests: Record<string, unknown>[];
    };
    assert.equal(index.mediaType, ociIndexType);
    assert.equal(index.schemaVersion, 2);
    const byDigest = new Map(index.manifests.map((m) => [m.digest, m]));
    assert.deepEqual(byDigest.get(sig.digest), {
      mediaType: ociManifestType,
      digest: sig.digest,
      size: sig.manifest.length,
      artifactType: "application/vnd.example.signature",
      annotations: { "org.example.signed-by": "alice" },
    });
    // Without artifactType, the config's media type stands in.
    assert.equal(byDigest.get(sbom.digest)?.artifactType, "application/vnd.example.sbom.config");

    const filtered = await call(
      url,
      `/v2/refs/app/referrers/${subject.digest}?artifactType=application/vnd.example.signature`,
    );
    assert.equal(filtered.headers.get("oci-filters-applied"), "artifactType");
    assert.deepEqual(
      (filtered.json() as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      [sig.digest],
    );

    const none = await call(url, `/v2/refs/app/referrers/${sha256("nothing refers to this")}`);
    assert.equal(none.status, 200);
    assert.deepEqual((none.json() as { manifests: unknown[] }).manifests, []);
    const bad = await call(url, "/v2/refs/app/referrers/sha256:zzz");
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), "DIGEST_INVALID");

    // Deleting a referrer removes it from the listing.
    assert.equal((await call(url, `/v2/refs/app/manifests/${sig.digest}`, { method: "DELETE" })).status, 202);
    const after = await call(url, `/v2/refs/app/referrers/${subject.digest}`);
    assert.deepEqual(
      (after.json() as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      [sbom.digest],
    );
  });

  it("pages referrers with n/last and a Link header that keeps the artifactType filter", async () => {
    const subject = await pushImage(url, "refpage/app", "v1");
    const subjectDescriptor = {
      mediaType: ociManifestType,
      digest: subject.digest,
      size: subject.manifest.length,
    };
    const digests: string[] = [];
    for (const i of [1, 2, 3, 4, 5]) {
      const r = await pushImage(url, "refpage/app", `sig${i}`, {
        layer: Buffer.from(`signature ${i}`),
        extra: { artifactType: "application/vnd.example.sig", subject: subjectDescriptor },
      });
      digests.push(r.digest);
    }
    digests.sort();
    const seen: string[] = [];
    let next: string | null =
      `/v2/refpage/app/referrers/${subject.digest}?n=2&artifactType=application/vnd.example.sig`;
    let pages = 0;
    while (next) {
      const r = await call(url, next);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("oci-filters-applied"), "artifactType");
      const got = (r.json() as { manifests: { digest: string }[] }).manifests.map((m) => m.digest);
      assert.ok(got.length <= 2);
      seen.push(...got);
      pages++;
      const link = r.headers.get("link");
      if (link) assert.match(link, /artifactType=application%2Fvnd\.example\.sig>; rel="next"$/);
      next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen, digests, "every referrer once, in digest order");
    const whole = await call(url, `/v2/refpage/app/referrers/${subject.digest}`);
    assert.equal(whole.headers.get("link"), null);
    assert.equal((whole.json() as { manifests: unknown[] }).manifests.length, 5);
  });

  it("stores, pulls and lists a WASM component artifact like any other manifest", async () => {
    const wasmType = "application/vnd.tabbify.wasm.component.v1";
    const emptyType = "application/vnd.oci.empty.v1+json";
    const app = await pushImage(url, "wasm/hello", "app");
    const wasm = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    const configDigest = await pushBlob(url, "wasm/hello", emptyConfig);
    const wasmDigest = await pushBlob(url, "wasm/hello", wasm);
    const manifest = imageManifest(
      { digest: configDigest, size: emptyConfig.length, mediaType: emptyType },
      [{ digest: wasmDigest, size: wasm.length, mediaType: "application/wasm" }],
      {
        artifactType: wasmType,
        subject: { mediaType: ociManifestType, digest: app.digest, size: app.manifest.length },
        annotations: { "org.opencontainers.image.title": "hello.wasm" },
      },
    );
    const put = await call(url, "/v2/wasm/hello/manifests/v1", {
      method: "PUT",
      body: manifest,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(put.status, 201);
    const got = await call(url, "/v2/wasm/hello/manifests/v1", { headers: { accept: ociManifestType } });
    const parsed = got.json() as { artifactType: string; layers: { mediaType: string; digest: string }[] };
    assert.equal(parsed.artifactType, wasmType);
    assert.equal(parsed.layers[0]?.mediaType, "application/wasm");
    const layer = await call(url, `/v2/wasm/hello/blobs/${parsed.layers[0]?.digest}`);
    assert.deepEqual(layer.body, wasm);
    const refs = await call(
      url,
      `/v2/wasm/hello/referrers/${app.digest}?artifactType=${encodeURIComponent(wasmType)}`,
    );
    const listed = (refs.json() as { manifests: { digest: string; artifactType: string }[] }).manifests;
    assert.deepEqual(
      listed.map((m) => [m.digest, m.artifactType]),
      [[sha256(manifest), wasmType]],
    );
  });
});

describe("bad input: spec status and code, nothing stored, still serving", () => {
  const longName = `${"a".repeat(200)}/${"b".repeat(60)}`;
  const badNames = ["Upper/case", "a/../b", "a//b", "/leading", "trailing-", "a/./b", longName, "under_/x"];

  it("invalid repository names are 400 NAME_INVALID on every endpoint", async () => {
    const data = Buffer.from("name test");
    for (const name of badNames) {
      const paths: [string, string][] = [
        ["POST", `/v2/${name}/blobs/uploads/`],
        ["POST", `/v2/${name}/blobs/uploads/?digest=${sha256(data)}`],
        ["GET", `/v2/${name}/tags/list`],
        ["GET", `/v2/${name}/manifests/latest`],
        ["PUT", `/v2/${name}/manifests/latest`],
        ["GET", `/v2/${name}/blobs/${sha256(data)}`],
      ];
      for (const [method, path] of paths) {
        // Sent raw: `..`, `.` and `//` reach the server as written and must be refused there.
        const r = await rawCall(url, method, path, method === "GET" ? undefined : data);
        assert.equal(r.status, 400, `${method} ${path}: ${r.status}`);
        assert.equal(errorCode(r), "NAME_INVALID", `${method} ${path}`);
      }
    }
    const repos = await readdir(join(reg.dataDir, "repositories"));
    for (const r of repos) assert.ok(!/[A-Z]/.test(r) && r !== ".." && r.length <= 255, r);
    assert.equal(longName.length > 255, true);
    const long = await call(url, `/v2/${longName}/tags/list`);
    assert.equal(long.status, 400);
    assert.equal(errorCode(long), "NAME_INVALID");
  });

  it("a wrong digest is 400 DIGEST_INVALID and stores nothing", async () => {
    const filesBefore = (await blobFiles()).length;
    const stagedBefore = await stagedUploads();
    const data = Buffer.from("the real content");
    const wrong = sha256("other content");
    const single = await call(url, `/v2/digest/app/blobs/uploads/?digest=${wrong}`, {
      method: "POST",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(single.status, 400);
    assert.equal(errorCode(single), "DIGEST_INVALID");
    const start = await call(url, "/v2/digest/app/blobs/uploads/", { method: "POST" });
    const put = await call(url, `${start.headers.get("location")}?digest=${wrong}`, {
      method: "PUT",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(put.status, 400);
    assert.equal(errorCode(put), "DIGEST_INVALID");
    assert.equal((await call(url, `/v2/digest/app/blobs/${wrong}`, { method: "HEAD" })).status, 404);
    assert.equal((await call(url, `/v2/digest/app/blobs/${sha256(data)}`, { method: "HEAD" })).status, 404);
    assert.equal((await blobFiles()).length, filesBefore);
    assert.deepEqual(await stagedUploads(), stagedBefore);
  });

  it("a digest of the wrong or an unknown algorithm is 400 DIGEST_INVALID and stores nothing", async () => {
    const data = Buffer.from("algorithm test");
    const wrongAlgorithm = `sha512:${sha256(data).slice(7)}${sha256(data).slice(7)}`; // right length, wrong hash
    const unknownAlgorithm = `md5:${"0".repeat(32)}`;
    const truncated = sha256(data).slice(0, 40);
    const stagedBefore = await stagedUploads();
    for (const digest of [wrongAlgorithm, unknownAlgorithm, truncated, "sha256:", "nonsense"]) {
      const r = await call(url, `/v2/algo/app/blobs/uploads/?digest=${encodeURIComponent(digest)}`, {
        method: "POST",
        body: data,
        headers: { "content-type": "application/octet-stream" },
      });
      assert.equal(r.status, 400, digest);
      assert.equal(errorCode(r), "DIGEST_INVALID", digest);
      const get = await call(url, `/v2/algo/app/blobs/${encodeURIComponent(digest)}`);
      assert.ok(get.status === 400 || get.status === 404, digest);
    }
    assert.deepEqual(await stagedUploads(), stagedBefore);
    assert.equal((await call(url, "/v2/algo/app/tags/list")).status, 404);
  });

  it("GET/HEAD of a reference that is neither tag nor digest is 404 MANIFEST_UNKNOWN; PUT is 400 TAG_INVALID", async () => {
    const image = await pushImage(url, "badref/app", "v1");
    for (const ref of ["-bad", "a%2Bb", ".hidden", "x".repeat(129), "sha256:zzz"]) {
      const get = await call(url, `/v2/badref/app/manifests/${ref}`);
      assert.equal(get.status, 404, ref);
      assert.equal(errorCode(get), "MANIFEST_UNKNOWN", ref);
      const head = await call(url, `/v2/badref/app/manifests/${ref}`, { method: "HEAD" });
      assert.equal(head.status, 404, ref);
    }
    const put = await call(url, "/v2/badref/app/manifests/-bad", {
      method: "PUT",
      body: image.manifest,
      headers: { "content-type": ociManifestType },
    });
    assert.equal(put.status, 400);
    assert.equal(errorCode(put), "TAG_INVALID");
    const tags = await call(url, "/v2/badref/app/tags/list");
    assert.deepEqual((tags.json() as { tags: string[] }).tags, ["v1"], "nothing stored");
  });

  it("PUT to finish an upload without ?digest= is DIGEST_INVALID", async () => {
    const start = await call(url, "/v2/nodigest/app/blobs/uploads/", { method: "POST" });
    const r = await call(url, start.headers.get("location")!, { method: "PUT" });
    assert.equal(r.status, 400);
    assert.equal(errorCode(r), "DIGEST_INVALID");
  });

  it("the server keeps serving after all of the above", async () => {
    assert.equal((await call(url, "/v2/")).status, 200);
    const digest = await pushBlob(url, "still/serving", "yes");
    assert.equal((await call(url, `/v2/still/serving/blobs/${digest}`)).body.toString(), "yes");
  });
});
