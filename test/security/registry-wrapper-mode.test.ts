// Issue 9 §6 "Wrapper mode": in front of an upstream registry (Debian's docker-registry, as in
// test/registry-upstream.test.ts), paths the auth gate cannot route (`…/tags/list/`,
// `//_catalog`, percent-encoded `..` or `/`, a trailing slash) are refused by the gate and never
// reach the upstream, even with a valid token; what is forwarded is the path the gate judged,
// rebuilt from its parts. A recording proxy between the two sees every request the upstream gets.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { type RunningRegistry, startRegistry } from "../../src/registry/index.js";
import {
  bearerFor,
  call,
  type Headers,
  pushImage,
  rawCall,
  startTestAuth,
  type TestAuth,
} from "../registry-helpers.js";
import { freePort, requireCommand, tempDir, writeDockerRegistryConfig } from "../support/tools.js";

let work: { path: string; remove(): Promise<void> };
let auth: TestAuth;
let recorder: http.Server;
let registry: RunningRegistry;
let acme: Headers;
let layerDigest: string;
/** Every path the upstream was asked for, in order. */
const seen: string[] = [];

before(async () => {
  const binary = requireCommand("docker-registry", "docker-registry");
  work = await tempDir("tabbify-registry-wrapper");
  const upstreamPort = await freePort();
  const config = await writeDockerRegistryConfig(work.path, join(work.path, "upstream-data"), upstreamPort);
  recorder = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const upstream = http.request(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => recorder.listen(0, "127.0.0.1", resolve));
  auth = await startTestAuth();
  registry = await startRegistry({
    host: "127.0.0.1",
    port: 0,
    dataDir: join(work.path, "registry"),
    authUrl: auth.url,
    upstreamUrl: `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`,
    upstreamCmd: `${binary} serve ${config}`,
  });
  acme = await bearerFor(registry.url, await auth.jwt("acme"), [
    "repository:acme/app:pull,push,delete",
    "registry:catalog:*",
  ]);
  ({ layerDigest } = await pushImage(registry.url, "acme/app", "v1", { headers: acme }));
});

after(async () => {
  await registry?.close();
  recorder?.close();
  await auth?.close();
  await work?.remove();
});

const unroutable = [
  "/v2/acme/app/tags/list/",
  "/v2//_catalog",
  "/v2/_catalog/",
  "/v2/acme/app/tags/list%2F",
  "/v2/acme/app/manifests/v1/",
  "/v2/acme/app//tags/list",
  "/v2/acme/app/./tags/list",
  "/v2/acme/%2e%2e/globex/app/tags/list",
  "/v2/acme/app/%2e%2e/%2e%2e/globex/app/tags/list",
  "/v2/acme/app/manifests/..%2F..%2F..%2Fglobex%2Fapp%2Fmanifests%2Fv1",
  "/v2/acme/app/manifests/%2e%2e",
  "/v2/acme/app/manifests/v1%23fragment",
  "/v2/acme/app/blobs/..%2F..%2F_catalog",
  "/v2/acme/app/blobs/uploads/..%2F..%2F..%2Fglobex%2Fapp%2Fblobs%2Fuploads%2F",
  "/v2/acme/app/blobs/uploads/%2e%2e",
  "/v2/acme/app/referrers/..%2F..%2Ftags%2Flist",
];

it("a path the gate cannot route is refused with a valid token and never forwarded", async () => {
  const before = seen.length;
  for (const path of unroutable) {
    for (const method of ["GET", "HEAD", "DELETE"]) {
      const r = await rawCall(registry.url, method, path, undefined, acme);
      assert.ok([400, 403, 404, 405].includes(r.status), `${method} ${path}: ${r.status}`);
    }
  }
  assert.deepEqual(seen.slice(before), [], "the upstream saw none of them");
});

it("what is forwarded is the canonical path: an encoded digest arrives decoded, routable paths work", async () => {
  const before = seen.length;
  const [algorithm, hex] = layerDigest.split(":");
  const encoded = await rawCall(
    registry.url,
    "GET",
    `/v2/acme/app/blobs/${algorithm}%3A${hex}`,
    undefined,
    acme,
  );
  assert.equal(encoded.status, 200);
  assert.equal(encoded.body.toString(), "layer of acme/app:v1");
  const tags = await call(registry.url, "/v2/acme/app/tags/list", { headers: acme });
  assert.deepEqual(tags.json(), { name: "acme/app", tags: ["v1"] });
  assert.deepEqual(seen.slice(before), [
    `GET /v2/acme/app/blobs/${layerDigest}`,
    "GET /v2/acme/app/tags/list",
  ]);
});

it("a method an endpoint does not serve is refused before the upstream", async () => {
  const before = seen.length;
  for (const [method, path] of [
    ["PUT", "/v2/acme/app/tags/list"],
    ["POST", "/v2/acme/app/manifests/v1"],
    ["PATCH", "/v2/acme/app/blobs/uploads/"],
  ] as const) {
    const r = await call(registry.url, path, { method, headers: acme, body: "x" });
    assert.equal(r.status, 405, `${method} ${path}`);
  }
  assert.deepEqual(seen.slice(before), []);
});

it("a mount from a repository the token cannot pull is forwarded without the mount", async () => {
  const before = seen.length;
  const other = await bearerFor(registry.url, await auth.jwt("acme"), ["repository:acme/other:push"]);
  const r = await call(registry.url, `/v2/acme/other/blobs/uploads/?mount=${layerDigest}&from=acme/app`, {
    method: "POST",
    headers: other,
  });
  assert.equal(r.status, 202, "a plain session, not a mount");
  assert.deepEqual(seen.slice(before), ["POST /v2/acme/other/blobs/uploads/"]);
  const dup = await call(
    registry.url,
    `/v2/acme/app/blobs/uploads/?mount=${layerDigest}&from=acme/app&from=globex/x`,
    {
      method: "POST",
      headers: acme,
    },
  );
  assert.equal(dup.status, 400, "two sources for one mount");
});
