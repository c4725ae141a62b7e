import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseManifest } from "../artifacts/manifest.js";
import { buildPushPlan, formatPlan, type PushInput } from "./plan.js";

const id = "0191e7c2-1111-7222-8333-444455556666";

function input(manifestSource: string, overrides: Partial<PushInput> = {}): PushInput {
  return {
    dir: "/apps/hello",
    manifest: parseManifest(manifestSource),
    stampedManifest: `[app]\nid = "${id}"\n`,
    appId: id,
    appIdSource: "lock",
    lock: { appId: id, latestVersion: 2 },
    files: [
      { path: "server.js", source: "/apps/hello/server.js", size: 100 },
      { path: "lib/a.js", source: "/apps/hello/lib/a.js", size: 20 },
    ],
    knownLatest: 2,
    store: "s3://tabbify-apps",
    nodeUrl: "http://node:8090/",
    ...overrides,
  };
}

const processManifest = `[app]\nname = "hello"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "process"\ncommand = ["node", "server.js"]\n`;
const dockerManifest = `[app]\nname = "d"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "docker"\n[build]\nkind = "docker"\ndockerfile = "deploy/Dockerfile"\n`;

describe("buildPushPlan", () => {
  it("claims, uploads the files, then the manifest, then publishes latest, then records the lock", () => {
    const plan = buildPushPlan(input(processManifest), 3);
    assert.deepEqual(
      plan.steps.map((s) => [s.kind, "key" in s ? s.key : s.kind === "write-lock" ? s.latestVersion : ""]),
      [
        ["claim", `apps/${id}/v3/.claim`],
        ["upload-file", `apps/${id}/v3/server.js`],
        ["upload-file", `apps/${id}/v3/lib/a.js`],
        ["upload-manifest", `apps/${id}/v3/manifest.toml`],
        ["publish-latest", `apps/${id}/latest`],
        ["write-lock", 3],
      ],
    );
    assert.equal(plan.files, 3);
    assert.equal(plan.bytes, 120 + Buffer.byteLength(`[app]\nid = "${id}"\n`));
    assert.equal(plan.url, `http://node:8090/app/${id}`);
    assert.equal(plan.imageTag, undefined);
  });

  it("records a new id in the lock before uploading anything", () => {
    const plan = buildPushPlan(input(processManifest, { appIdSource: "new", lock: null }), 1);
    assert.deepEqual(
      plan.steps.slice(0, 3).map((s) => s.kind),
      ["claim", "write-lock", "upload-file"],
    );
  });

  it("builds and saves the image under the versioned tag for docker builds", () => {
    const plan = buildPushPlan(input(dockerManifest), 7);
    const tag = `tbf-img-${id}-v7`;
    assert.equal(plan.imageTag, tag);
    const build = plan.steps.find((s) => s.kind === "docker-build");
    const save = plan.steps.find((s) => s.kind === "docker-save");
    assert.deepEqual(build, {
      kind: "docker-build",
      argv: ["docker", "build", "-t", tag, "-f", "deploy/Dockerfile", "."],
      cwd: "/apps/hello",
      tag,
    });
    assert.deepEqual(save, {
      kind: "docker-save",
      argv: ["docker", "save", tag],
      tag,
      key: `apps/${id}/v7/image.tar.gz`,
      path: "image.tar.gz",
    });
    assert.equal(plan.files, 4);
  });

  it("prints every key with its size and every docker command", () => {
    const text = formatPlan(buildPushPlan(input(dockerManifest), 3));
    assert.match(text, new RegExp(`upload {3}apps/${id}/v3/server\\.js {2}100 B`));
    assert.match(text, new RegExp(`upload {3}apps/${id}/v3/lib/a\\.js {2}20 B`));
    assert.match(text, new RegExp(`docker build -t tbf-img-${id}-v3 -f deploy/Dockerfile \\.`));
    assert.match(text, new RegExp(`docker save tbf-img-${id}-v3 \\| gzip`));
    assert.match(text, new RegExp(`publish {2}apps/${id}/latest = "3"`));
    assert.match(text, /nothing was uploaded, docker was not run/);
  });
});
