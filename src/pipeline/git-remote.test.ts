import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { checkGitRef } from "../core/git-ref.js";
import { checkGitUrl, gitManifestSource, parseRepoCoordinates, resolveRemoteRef } from "./git-remote.js";

describe("parseRepoCoordinates", () => {
  const table: [string, { host: string; owner: string; repo: string } | undefined][] = [
    ["https://github.com/acme/app", { host: "github.com", owner: "acme", repo: "app" }],
    ["https://github.com/acme/app.git", { host: "github.com", owner: "acme", repo: "app" }],
    ["https://github.com/acme/app/", { host: "github.com", owner: "acme", repo: "app" }],
    ["https://github.com/acme/app.git/", { host: "github.com", owner: "acme", repo: "app" }],
    ["https://ghe.example.com/Acme/App.git", { host: "ghe.example.com", owner: "Acme", repo: "App" }],
    ["https://code.example/forgejo/acme/app.git", { host: "code.example", owner: "acme", repo: "app" }],
    ["http://127.0.0.1:3000/acme/app", { host: "127.0.0.1:3000", owner: "acme", repo: "app" }],
    ["ssh://git@git.example:2222/acme/app.git", { host: "git.example:2222", owner: "acme", repo: "app" }],
    ["git@github.com:acme/app.git", { host: "github.com", owner: "acme", repo: "app" }],
    ["git@git.example:sub/acme/app", { host: "git.example", owner: "acme", repo: "app" }],
    ["https://github.com/acme", undefined],
    ["https://github.com/", undefined],
    ["not a url", undefined],
    ["", undefined],
    ["file:///srv/acme/app.git", undefined],
    ["https://github.com/acme/-app", undefined],
    ["https://github.com/acme/a%20b", undefined],
  ];
  for (const [raw, want] of table) {
    it(`${JSON.stringify(raw)} → ${want ? `${want.owner}/${want.repo}` : "refused"}`, () => {
      assert.deepEqual(parseRepoCoordinates(raw), want);
    });
  }
});

describe("argument safety", () => {
  it("refuses refs and URLs git could read as options", () => {
    assert.match(checkGitRef("--upload-pack=touch /tmp/x") ?? "", /must not begin with '-'/);
    assert.match(checkGitRef("-b") ?? "", /'-'/);
    assert.match(checkGitRef("a..b") ?? "", /branch, tag or commit sha/);
    assert.equal(checkGitRef("main"), undefined);
    assert.equal(checkGitRef("release/1.2"), undefined);
    assert.match(checkGitUrl("--upload-pack=touch /tmp/x", { allowLocal: true }) ?? "", /'-'/);
    assert.match(checkGitUrl("-oProxyCommand=x", { allowLocal: true }) ?? "", /'-'/);
    assert.match(checkGitUrl("ext::sh -c id", { allowLocal: true }) ?? "", /whitespace|ext:/);
    assert.match(checkGitUrl("fd::3", { allowLocal: true }) ?? "", /fd:|not a URL/);
    assert.equal(checkGitUrl("ssh://git@git.example/acme/app.git", { allowLocal: false }), undefined);
  });

  it("refuses local repositories without --allow-local-repos and says how to enable them", () => {
    assert.match(checkGitUrl("file:///srv/app.git", { allowLocal: false }) ?? "", /--allow-local-repos/);
    assert.match(checkGitUrl("/srv/app.git", { allowLocal: false }) ?? "", /--allow-local-repos/);
    assert.equal(checkGitUrl("file:///srv/app.git", { allowLocal: true }), undefined);
  });

  it("runs nothing for an injected ref or URL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "git-remote-inject-"));
    const marker = join(dir, "x");
    try {
      const source = gitManifestSource();
      await assert.rejects(source.fetchManifest(`file://${dir}`, `--upload-pack=touch ${marker}`, undefined));
      await assert.rejects(source.fetchManifest(`--upload-pack=touch ${marker}`, "main", undefined));
      await assert.rejects(resolveRemoteRef(`-u touch ${marker}`, "main", process.env, dir));
      assert.equal(existsSync(marker), false, "nothing was executed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("gitManifestSource", () => {
  it("resolves a branch with ls-remote and reads tabbify.toml at that commit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "git-remote-read-"));
    const env = {
      ...process.env,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@t.invalid",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@t.invalid",
    };
    const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, env }).toString().trim();
    try {
      git("init", "--quiet", "--initial-branch=main");
      writeFileSync(join(dir, "tabbify.toml"), '[app]\nname = "one"\n');
      git("add", "-A");
      git("commit", "--quiet", "-m", "one");
      const first = git("rev-parse", "HEAD");
      writeFileSync(join(dir, "tabbify.toml"), '[app]\nname = "two"\n');
      git("commit", "--quiet", "-am", "two");
      const source = gitManifestSource();
      assert.equal(await source.fetchManifest(`file://${dir}`, "main", undefined), '[app]\nname = "two"\n');
      assert.equal(await source.fetchManifest(`file://${dir}`, first, undefined), '[app]\nname = "one"\n');
      await assert.rejects(source.fetchManifest(`file://${dir}`, "nope", undefined), /no branch or tag nope/);
      git("rm", "--quiet", "tabbify.toml");
      git("commit", "--quiet", "-m", "none");
      assert.equal(await source.fetchManifest(`file://${dir}`, "main", undefined), null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
