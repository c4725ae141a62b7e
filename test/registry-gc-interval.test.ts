// Issue 14 §3, `--gc-interval`: the real `tabbify registry` process collects on its own. An
// orphan blob (pushed, referenced by no manifest) goes once it is older than --min-age, while a
// tagged image keeps every blob; the flag wins over REGISTRY_GC_INTERVAL; SIGTERM ends the
// process cleanly with the schedule stopped. Off by default: without the flag nothing is taken.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { pushBlob, pushImage, type SpawnedRegistry, spawnRegistry } from "./registry-helpers.js";

const dirs: string[] = [];
const running: SpawnedRegistry[] = [];
after(async () => {
  for (const r of running) await r.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<SpawnedRegistry> {
  const dir = await mkdtemp(join(tmpdir(), "reg-gc-interval-"));
  dirs.push(dir);
  const reg = await spawnRegistry(dir, args, env);
  running.push(reg);
  return reg;
}

const blobStatus = async (base: string, repo: string, digest: string) =>
  (await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: "HEAD" })).status;

describe("registry --gc-interval", () => {
  it("collects an orphan blob on its own, keeps a tagged image, and stops on SIGTERM", async () => {
    // The env says an hour; the flag (2s) wins.
    const reg = await start(["--gc-interval", "2s", "--min-age", "1s"], { REGISTRY_GC_INTERVAL: "1h" });
    const image = await pushImage(reg.url, "acme/web", "v1", { layer: Buffer.from("kept layer") });
    const orphan = await pushBlob(reg.url, "acme/web", "an orphan nobody references");
    assert.equal(await blobStatus(reg.url, "acme/web", orphan), 200);
    const deadline = Date.now() + 90_000;
    while ((await blobStatus(reg.url, "acme/web", orphan)) !== 404) {
      if (Date.now() > deadline) assert.fail(`the orphan was never collected:\n${reg.output().slice(-3000)}`);
      await sleep(250);
    }
    assert.equal(
      await blobStatus(reg.url, "acme/web", image.layerDigest),
      200,
      "a tagged image lost a layer",
    );
    const manifest = await fetch(`${reg.url}/v2/acme/web/manifests/v1`, {
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    assert.equal(manifest.status, 200);
    assert.match(reg.output(), /gc run finished/);
    await reg.stop("SIGTERM");
    assert.equal(reg.child.exitCode, 0, reg.output().slice(-2000));
  });

  it("is off by default, and refuses --min-age 0 (pushes run while it collects)", async () => {
    const reg = await start(["--min-age", "1s"]);
    const orphan = await pushBlob(reg.url, "acme/web", "an orphan left alone");
    await sleep(4000);
    assert.equal(await blobStatus(reg.url, "acme/web", orphan), 200);
    assert.doesNotMatch(reg.output(), /gc run/);
    await assert.rejects(
      start(["--gc-interval", "1m", "--min-age", "0"]),
      /--gc-interval needs a --min-age above 0/,
    );
  });
});
