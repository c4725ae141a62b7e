/**
 * Attacks on the node's git surface: no password, a wrong one, names that try to leave the
 * repository root, the push hook's callback without a push in progress, and refs or URLs that
 * git could read as options (refused before git runs; nothing is executed).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { gitManifestSource } from "../../src/pipeline/git-remote.js";
import { tempDir } from "../support/tools.js";

const KEY = "git-attack-node-key-123456";

describe("git surface under attack", () => {
  let dir: { path: string; remove(): Promise<void> };
  let node: RunningNode;
  const basic = (password: string) => `Basic ${Buffer.from(`x:${password}`).toString("base64")}`;

  before(async () => {
    dir = await tempDir("tabbify-git-attack");
    node = await startNode({
      port: 0,
      httpLogLevel: "silent",
      nodeKey: KEY,
      dataDir: join(dir.path, "node"),
    });
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("asks for a password, and refuses a wrong one, without creating anything", async () => {
    for (const authorization of [undefined, basic("wrong"), `Bearer ${KEY}`, "Basic !!!"]) {
      const res = await fetch(`${node.url}/git/app.git/info/refs?service=git-receive-pack`, {
        headers: authorization ? { authorization } : {},
      });
      assert.equal(res.status, 401, String(authorization));
      assert.match(res.headers.get("www-authenticate") ?? "", /^Basic realm="tabbify"/);
      assert.doesNotMatch(await res.text(), new RegExp(KEY));
    }
    assert.equal(existsSync(join(dir.path, "node", "git", "app.git")), false);
  });

  it("refuses names that are no app name", async () => {
    for (const path of [
      "/git/..%2F..%2Fetc.git/info/refs",
      "/git/../x.git/info/refs",
      "/git/-x.git/info/refs",
      "/git/UPPER.git/info/refs",
      "/git/a.git/objects/info/packs",
      "/git/a.git/HEAD",
    ]) {
      const res = await fetch(`${node.url}${path}?service=git-upload-pack`, {
        headers: { authorization: basic(KEY) },
      });
      assert.equal(res.status, 404, path);
    }
  });

  it("a fetch of a repository never pushed is 404, and creates nothing", async () => {
    const res = await fetch(`${node.url}/git/never.git/info/refs?service=git-upload-pack`, {
      headers: { authorization: basic(KEY) },
    });
    assert.equal(res.status, 404);
    assert.equal(existsSync(join(dir.path, "node", "git", "never.git")), false);
  });

  it("the hook callback answers only a push in progress", async () => {
    for (const headers of [{}, { "x-tabbify-hook-token": "guess" }] as Record<string, string>[]) {
      const res = await fetch(`${node.url}/git-hook`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ sha: `${"0".repeat(39)}1` }),
      });
      assert.equal(res.status, 401);
    }
  });

  it("a local repository is refused without --allow-local-repos, saying how to enable it", async () => {
    for (const repo_url of ["file:///etc", "/etc"]) {
      const res = await fetch(`${node.url}/v1/deploy`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ repo_url, ref: "main", tenant: "t" }),
      });
      assert.equal(res.status, 400);
      assert.match(await res.text(), /--allow-local-repos/);
    }
  });

  it("a ref or URL beginning with '-' is refused before git runs", async () => {
    const marker = join(dir.path, "executed");
    const source = gitManifestSource();
    await assert.rejects(
      source.fetchManifest("https://git.example/a/b.git", `--upload-pack=touch ${marker}`, undefined),
    );
    await assert.rejects(source.fetchManifest(`--upload-pack=touch ${marker}`, "main", undefined));
    const res = await fetch(`${node.url}/v1/deploy`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({
        repo_url: "https://git.example/a/b.git",
        ref: `--upload-pack=touch ${marker}`,
        tenant: "t",
      }),
    });
    assert.equal(res.status, 400);
    assert.equal(existsSync(marker), false, "nothing was executed");
  });
});
