/**
 * `tcli push` reads only the app's directory: symlinks that leave it are refused before anything
 * is uploaded, naming the link; links inside it are stored as what they point to. The compiled
 * CLI in its own process, against a local store.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { repoRoot, run, tempDir } from "../support/tools.js";

const entry = join(repoRoot, "dist", "src", "main", "tcli.js");
const manifest = `[app]\nname = "leaky"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "process"\ncommand = ["node", "server.js"]\n`;
const wasmManifest = `[app]\nname = "leaky-wasm"\n[lifecycle]\nmode = "on_request"\n[runtime]\ntype = "wasm"\nentry = "hello.wasm"\n`;

/** Runs `tcli push <dir> --store local --store-dir <store> --json`; never throws on exit codes. */
async function push(
  dir: string,
  store: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npx tsc -p .\` first`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_")));
  try {
    const r = await run(
      process.execPath,
      [entry, "push", dir, "--store", "local", "--store-dir", store, "--json"],
      {
        env,
      },
    );
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { exitCode: number | null; stdout: string; stderr: string };
    return { code: e.exitCode, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Every file under `dir`, recursively, as relative paths ([] when it does not exist). */
async function listTree(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1));
}

describe("tcli push refuses symlinks that leave the app directory", () => {
  let tmp: { path: string; remove(): Promise<void> };
  let n = 0;
  const secret = "root:$6$not-a-real-hash:19000:0:99999:7:::\n";
  let outside: string;

  before(async () => {
    tmp = await tempDir("tabbify-push-symlink");
    outside = join(tmp.path, "outside");
    await mkdir(outside);
    await writeFile(join(outside, "shadow"), secret);
  });
  after(async () => {
    await tmp.remove();
  });

  /** A fresh app dir three levels below the temp root, and a fresh store beside it. */
  async function app(files: Record<string, string> = {}): Promise<{ dir: string; store: string }> {
    const dir = join(tmp.path, `case${++n}`, "a", "app");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "manifest.toml"), manifest);
    await writeFile(join(dir, "server.js"), "console.log('hi');\n");
    for (const [path, content] of Object.entries(files)) await writeFile(join(dir, path), content);
    return { dir, store: join(tmp.path, `case${n}`, "store") };
  }

  async function assertRefused(dir: string, store: string, link: string, target: string): Promise<void> {
    const r = await push(dir, store);
    assert.equal(r.code, 1, `push must fail:\n${r.stdout}${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(`${link} is a symlink to ${target.replace(/[.$]/g, "\\$&")}, outside the app directory`),
    );
    assert.deepEqual(await listTree(store), [], "nothing reached the store, not even a claim");
  }

  it("ln -s /etc etc-dir-link: refused, /etc is not copied", async () => {
    const { dir, store } = await app();
    await symlink("/etc", join(dir, "etc-dir-link"));
    await assertRefused(dir, store, "etc-dir-link", "/etc");
  });

  it("a file link to a shadow-like file outside: refused, the secret is not stored", async () => {
    const { dir, store } = await app();
    await mkdir(join(dir, "config"));
    await symlink(join(outside, "shadow"), join(dir, "config", "passwd"));
    await assertRefused(dir, store, "config/passwd", join(outside, "shadow"));
  });

  it("a relative ../../ link: refused", async () => {
    const { dir, store } = await app();
    await symlink("../../../outside/shadow", join(dir, "leak.txt"));
    await assertRefused(dir, store, "leak.txt", join(outside, "shadow"));
  });

  it("a wasm entry that links outside: refused", async () => {
    const { dir, store } = await app();
    await writeFile(join(dir, "manifest.toml"), wasmManifest);
    await symlink(join(outside, "shadow"), join(dir, "hello.wasm"));
    await assertRefused(dir, store, "\\[runtime\\] entry hello.wasm", join(outside, "shadow"));
  });

  it("an outside link listed in .tabbifyignore is skipped, never read", async () => {
    const { dir, store } = await app({ ".tabbifyignore": "etc-dir-link\n" });
    await symlink("/etc", join(dir, "etc-dir-link"));
    const r = await push(dir, store);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!(await listTree(store)).some((p) => p.includes("etc-dir-link")));
  });

  it("links inside the directory are stored as what they point to", async () => {
    const { dir, store } = await app();
    await mkdir(join(dir, "lib"));
    await writeFile(join(dir, "lib", "util.js"), "export const x = 1;\n");
    await symlink("lib/util.js", join(dir, "alias.js"));
    await symlink("lib", join(dir, "lib-link"));
    const r = await push(dir, store);
    assert.equal(r.code, 0, r.stderr);
    const { appId, version } = JSON.parse(r.stdout) as { appId: string; version: number };
    const v = join(store, "apps", appId, `v${version}`);
    assert.deepEqual((await listTree(v)).filter((p) => p !== ".claim").sort(), [
      "alias.js",
      "lib-link/util.js",
      "lib/util.js",
      "manifest.toml",
      "server.js",
    ]);
    assert.equal(await readFile(join(v, "alias.js"), "utf8"), "export const x = 1;\n");
  });
});
