import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { collectFiles, singleFile } from "./files.js";

describe("collectFiles", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tabbify-files-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function tree(root: string, files: Record<string, string>) {
    for (const [path, content] of Object.entries(files)) {
      await mkdir(join(root, path, ".."), { recursive: true });
      await writeFile(join(root, path), content);
    }
  }

  it("honours .gitignore and .tabbifyignore at every level and always skips .git", async () => {
    const app = join(dir, "app");
    await tree(app, {
      "manifest.toml": "m",
      "tabbify.lock": "l",
      ".gitignore": "*.log\nbuild/\n",
      ".tabbifyignore": "secret.txt\n",
      "server.js": "s",
      "debug.log": "x",
      "secret.txt": "x",
      "build/out.js": "x",
      "node_modules/dep/index.js": "d",
      ".git/HEAD": "ref",
      "sub/.gitignore": "!keep.log\nlocal.txt\n",
      "sub/keep.log": "k",
      "sub/other.log": "o",
      "sub/local.txt": "x",
      "local.txt": "top-level local.txt is not ignored by sub/.gitignore",
    });
    const files = await collectFiles(app, { skipTopLevel: ["manifest.toml", "tabbify.lock"] });
    assert.deepEqual(
      files.map((f) => f.path),
      [
        ".gitignore",
        ".tabbifyignore",
        "local.txt",
        "node_modules/dep/index.js",
        "server.js",
        "sub/.gitignore",
        "sub/keep.log",
      ],
    );
    assert.equal(files.find((f) => f.path === "server.js")?.size, 1);
  });

  it("skips directories it is told to (a store inside the app dir) and cuts symlink loops", async () => {
    const app = join(dir, "app2");
    await tree(app, { "a.js": "a", "store/apps/x": "x" });
    await symlink(app, join(app, "loop"));
    const files = await collectFiles(app, { skipDirs: [join(app, "store")] });
    assert.deepEqual(
      files.map((f) => f.path),
      ["a.js"],
    );
  });

  it("names a broken symlink as unreadable", async () => {
    const app = join(dir, "app3");
    await tree(app, { "a.js": "a" });
    await symlink(join(app, "gone"), join(app, "dangling.js"));
    await assert.rejects(
      collectFiles(app),
      (err) =>
        isTabbifyError(err, "FILE_UNREADABLE") && err.message === "cannot read dangling.js: a broken symlink",
    );
  });

  it("finds a single entry file or says it is missing", async () => {
    const app = join(dir, "app4");
    await tree(app, { "hello.wasm": "\0asm" });
    assert.deepEqual(await singleFile(app, "hello.wasm", "entry"), {
      path: "hello.wasm",
      source: join(app, "hello.wasm"),
      size: 4,
    });
    await assert.rejects(
      singleFile(app, "app.wasm", "[runtime] entry"),
      /\[runtime\] entry app\.wasm does not exist/,
    );
  });

  it("stores a symlink inside the directory as what it points to", async () => {
    const app = join(dir, "app5");
    await tree(app, { "lib/real.js": "real", "a.js": "a" });
    await symlink("lib/real.js", join(app, "alias.js"));
    await symlink("lib", join(app, "lib-link"));
    const files = await collectFiles(app);
    assert.deepEqual(
      files.map((f) => [f.path, f.size]),
      [
        ["a.js", 1],
        ["alias.js", 4],
        ["lib-link/real.js", 4],
        ["lib/real.js", 4],
      ],
    );
  });

  it("refuses symlinks that leave the directory, naming the link, unless they are ignored", async () => {
    const outside = join(dir, "outside");
    await tree(outside, { "secret.txt": "s" });
    const app = join(dir, "nested", "app6");
    await tree(app, { "a.js": "a", "sub/b.js": "b" });
    await symlink(outside, join(app, "sub", "dir-link"));
    await assert.rejects(
      collectFiles(app),
      (err) =>
        isTabbifyError(err, "SYMLINK_OUTSIDE_APP") &&
        err.message.startsWith(`sub/dir-link is a symlink to ${outside}, outside the app directory`),
    );
    await writeFile(join(app, ".tabbifyignore"), "sub/dir-link\n");
    assert.deepEqual(
      (await collectFiles(app)).map((f) => f.path),
      [".tabbifyignore", "a.js", "sub/b.js"],
    );
    await symlink("../../outside/secret.txt", join(app, "up.txt"));
    await assert.rejects(collectFiles(app), (err) => isTabbifyError(err, "SYMLINK_OUTSIDE_APP"));
  });

  it("refuses an entry file that is a symlink out of the directory", async () => {
    const app = join(dir, "app7");
    await tree(app, { x: "x" });
    await symlink(join(dir, "outside", "secret.txt"), join(app, "hello.wasm"));
    await assert.rejects(
      singleFile(app, "hello.wasm", "[runtime] entry"),
      (err) =>
        isTabbifyError(err, "SYMLINK_OUTSIDE_APP") &&
        /\[runtime\] entry hello\.wasm is a symlink/.test(err.message),
    );
  });
});
