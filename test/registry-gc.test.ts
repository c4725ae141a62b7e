/**
 * `tabbify registry gc` end to end: two images pushed with docker to a running `tabbify registry`,
 * one deleted through the API, the collector run as a process against the same data dir while
 * the registry keeps serving, and the survivor pulled with skopeo.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { GcReport } from "../src/registry/gc.js";
import { call, pushBlob } from "./registry-helpers.js";
import {
  buildScratchImage,
  ensureDockerd,
  type RunningProcess,
  requireCommand,
  run,
  spawnTabbify,
  tempDir,
} from "./support/tools.js";

interface Pushed {
  digest: string;
  size: number;
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
}

/** Every file under `dir` with its size and modification time. */
async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (path: string) => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        const s = await stat(full);
        out.set(full.slice(dir.length), `${s.size} ${s.mtimeMs}`);
      }
    }
  };
  await walk(dir);
  return out;
}

/** Sets every file under `dir` back in time: what an hour and more of quiet does. */
async function backdate(dir: string, ms: number): Promise<void> {
  const when = new Date(Date.now() - ms);
  for (const path of (await tree(dir)).keys()) await utimes(join(dir, path), when, when);
}

describe("tabbify registry gc against a live registry, with docker and skopeo", { timeout: 600_000 }, () => {
  let dir: { path: string; remove(): Promise<void> };
  let registry: RunningProcess;
  let base: string;
  let host: string;
  let data: string;
  let dockerConfig: string;
  const tags: string[] = [];

  before(async () => {
    requireCommand("skopeo", "skopeo");
    await ensureDockerd();
    dir = await tempDir("tabbify-registry-gc");
    data = join(dir.path, "registry");
    dockerConfig = join(dir.path, "docker-config");
    await mkdir(dockerConfig);
    registry = spawnTabbify(["registry", "--listen", "127.0.0.1:0", "--data", data], {
      REGISTRY_AUTH_URL: "",
    });
    [, base] = (await registry.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/)) as [string, string];
    host = base.replace("http://", "");
  });

  after(async () => {
    for (const tag of tags) await run("docker", ["rmi", tag]).catch(() => {});
    await registry?.stop();
    await dir?.remove();
  });

  const docker = (args: string[]) =>
    run("docker", args, {
      env: { ...process.env, DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: "0" },
      timeoutMs: 180_000,
    });

  const gc = (args: string[]) =>
    run(process.execPath, ["dist/src/main/tabbify.js", "registry", "gc", "--data", data, ...args]);

  /** The manifest a tag points at, as skopeo reads it. */
  async function inspect(tag: string): Promise<Pushed> {
    const info = JSON.parse(
      (await run("skopeo", ["inspect", "--tls-verify=false", `docker://${tag}`])).stdout,
    ) as { Digest: string };
    const raw = (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${tag}`])).stdout;
    const manifest = JSON.parse(raw) as Omit<Pushed, "digest" | "size">;
    const head = await call(base, `/v2/dev/app/manifests/${info.Digest}`, {
      method: "HEAD",
      headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
    });
    assert.equal(head.status, 200);
    return {
      digest: info.Digest,
      size: Number(head.headers.get("content-length")),
      config: manifest.config,
      layers: manifest.layers,
    };
  }

  const blobStatus = async (digest: string) =>
    (await call(base, `/v2/dev/app/blobs/${digest}`, { method: "HEAD" })).status;

  test("keeps shared layers, sweeps a deleted image's own blobs, spares fresh uploads; the survivor still pulls", async () => {
    const [tagA, tagB] = [`${host}/dev/app:a`, `${host}/dev/app:b`];
    tags.push(tagA, tagB);
    for (const [tag, which] of [
      [tagA, "a"],
      [tagB, "b"],
    ] as const) {
      await buildScratchImage(tag, {
        files: { "/etc/which": `image ${which}\n` },
        command: ["cat", "/etc/which"],
      });
      await docker(["push", tag]);
    }
    const a = await inspect(tagA);
    const b = await inspect(tagB);
    assert.equal(a.layers.length, 2);
    assert.equal(a.layers[0]!.digest, b.layers[0]!.digest, "both images share the busybox layer");
    assert.notEqual(a.layers[1]!.digest, b.layers[1]!.digest);
    assert.notEqual(a.config.digest, b.config.digest);

    const deleted = await call(base, `/v2/dev/app/manifests/${b.digest}`, { method: "DELETE" });
    assert.equal(deleted.status, 202);
    await backdate(data, 2 * 3600 * 1000);
    // Uploaded after the quiet hour: a push whose manifest has not arrived yet.
    const fresh = await pushBlob(base, "dev/app", "a layer whose manifest is still on its way");

    const bOnly = [b.digest, b.config.digest, b.layers[1]!.digest].sort();
    const before = await tree(data);
    const dry = JSON.parse((await gc(["--dry-run", "--json"])).stdout) as GcReport;
    assert.deepEqual(await tree(data), before, "--dry-run changes nothing");
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.blobsRemoved.map((x) => x.digest).sort(), bOnly);
    assert.deepEqual(
      dry.blobsYoung.map((x) => x.digest),
      [fresh],
    );
    for (const digest of [b.config.digest, b.layers[1]!.digest]) assert.equal(await blobStatus(digest), 200);

    const { stdout } = await gc([]);
    for (const digest of bOnly) assert.match(stdout, new RegExp(`^deleted blob ${digest} `, "m"));
    assert.match(stdout, new RegExp(`^dev/app: marking manifest ${a.digest} \\(tag a\\)$`, "m"));
    assert.match(stdout, new RegExp(`^dev/app: marking blob ${a.layers[0]!.digest}$`, "m"));
    assert.match(stdout, new RegExp(`^kept, younger than --min-age: blob ${fresh} `, "m"));
    const freed = b.size + b.config.size + b.layers[1]!.size;
    assert.match(
      stdout,
      new RegExp(
        `^summary: 1 repository; 1 manifest kept, 0 removed; 5 blobs kept \\(1 younger than --min-age\\), 3 removed; .* freed \\(${freed} bytes\\); 2 links removed; 0 stale upload sessions removed$`,
        "m",
      ),
    );

    for (const digest of bOnly) {
      assert.equal(await blobStatus(digest), 404, digest);
      const [, hex] = digest.split(":");
      await assert.rejects(stat(join(data, "blobs", "sha256", hex!.slice(0, 2), hex!)), /ENOENT/);
      await assert.rejects(
        stat(join(data, "repositories", "dev", "app", "_layers", "sha256", hex!)),
        /ENOENT/,
      );
    }
    for (const digest of [a.config.digest, ...a.layers.map((l) => l.digest), fresh]) {
      assert.equal(await blobStatus(digest), 200, digest);
    }

    const layout = join(dir.path, "pulled");
    await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${tagA}`, `oci:${layout}:a`], {
      timeoutMs: 180_000,
    });
    const pulled = await readdir(join(layout, "blobs", "sha256"));
    for (const layer of a.layers) assert.ok(pulled.includes(layer.digest.split(":")[1]!), layer.digest);
    await assert.rejects(
      run("skopeo", ["inspect", "--tls-verify=false", `docker://${tagB}`]),
      /manifest unknown|MANIFEST_UNKNOWN/i,
    );

    const again = JSON.parse((await gc(["--json"])).stdout) as GcReport;
    assert.deepEqual(again.blobsRemoved, [], "nothing more to collect");

    await assert.rejects(gc(["--min-age", "soon"]), (err: Error & { exitCode: number; stderr: string }) => {
      assert.equal(err.exitCode, 2);
      assert.match(err.stderr, /--min-age wants a duration/);
      return true;
    });
  });
});
