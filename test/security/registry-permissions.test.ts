// Issue 9 §6 "Permissions": a standalone `tabbify registry --data` creates its dirs 0700 and its
// files 0600 (the local storage driver does, for the artifact store too), even under umask 000,
// so another local user reads no tenant's blobs; and at start it warns, with the chmod that fixes
// it, about a data dir that group or others can read. The read is tried as uid 65534.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, lstat, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { parseDigest } from "../../src/core/digest.js";
import { sleep } from "../../src/core/sleep.js";
import { layout } from "../../src/registry/layout.js";
import { pushImage, spawnRegistry } from "../registry-helpers.js";
import { requireCommand, spawnTabbify, tempDir } from "../support/tools.js";

const exec = promisify(execFile);
const nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];

let work: { path: string; remove(): Promise<void> };

before(async () => {
  requireCommand("setpriv", "util-linux");
  if (process.getuid?.() !== 0)
    throw new Error("this test switches to uid 65534 with setpriv: run it as root");
  work = await tempDir("tabbify-registry-perms");
  // The temp dir itself is 0700; open it up so only the registry's own modes stand in the way.
  await chmod(work.path, 0o755);
});

after(() => work?.remove());

/** Every dir and file under `root`, with its permission bits. */
async function modes(root: string): Promise<{ path: string; dir: boolean; mode: number }[]> {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  const walk = async (path: string) => {
    const info = await lstat(path);
    out.push({ path, dir: info.isDirectory(), mode: info.mode & 0o777 });
    if (info.isDirectory()) for (const entry of await readdir(path)) await walk(join(path, entry));
  };
  await walk(root);
  return out;
}

/** Runs `cat`/`ls` as uid 65534; resolves with its exit status and stderr. */
async function asNobody(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  try {
    await exec("setpriv", [...nobody, ...args]);
    return { ok: true, stderr: "" };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? err) };
  }
}

describe("a standalone registry's data dir", () => {
  it("is 0700 dirs and 0600 files after a push, even under umask 000, and uid 65534 reads no blob", async () => {
    const dataDir = join(work.path, "registry");
    const previous = process.umask(0);
    let registry: Awaited<ReturnType<typeof spawnRegistry>>;
    try {
      registry = await spawnRegistry(dataDir);
    } finally {
      process.umask(previous);
    }
    try {
      const layer = Buffer.from("hello world");
      const image = await pushImage(registry.url, "acme/app", "v1", { layer });
      // A session left open stages files too.
      await fetch(`${registry.url}/v2/acme/app/blobs/uploads/`, { method: "POST" });

      const all = await modes(dataDir);
      assert.ok(all.length > 10, `the push wrote files: ${all.length}`);
      const loose = all.filter((e) => e.mode !== (e.dir ? 0o700 : 0o600));
      assert.deepEqual(
        loose.map((e) => `${e.path} ${e.mode.toString(8)}`),
        [],
        "every dir 0700, every file 0600",
      );
      assert.ok(
        all.some((e) => e.path.includes("_tmp/uploads/") && !e.dir),
        "a staged upload was checked too",
      );

      const blob = join(dataDir, layout.blobData(parseDigest(image.layerDigest)));
      const read = await asNobody(["cat", blob]);
      assert.equal(read.ok, false, "uid 65534 read a tenant's blob");
      assert.match(read.stderr, /Permission denied/);
      assert.equal((await asNobody(["ls", dataDir])).ok, false, "uid 65534 listed the data dir");
      // The control: the same user reads a 0644 file beside it, so the refusal is the modes'.
      const control = join(work.path, "control.txt");
      await writeFile(control, "readable", { mode: 0o644 });
      assert.equal((await asNobody(["cat", control])).ok, true, "setpriv as 65534 can read a 0644 file");
    } finally {
      await registry.stop();
    }
  });

  it("a data dir group or others can read is reported at start, with the chmod that fixes it", async () => {
    const dataDir = join(work.path, "loose");
    await mkdir(join(dataDir, "blobs"), { recursive: true, mode: 0o755 });
    await chmod(dataDir, 0o755);
    await chmod(join(dataDir, "blobs"), 0o755);
    const registry = await spawnRegistry(dataDir);
    try {
      await sleep(200);
      const output = registry.output();
      assert.match(output, /readable by group or others/);
      assert.ok(output.includes(`chmod -R go-rwx '${dataDir}'`), output);
      assert.ok(output.includes(`${join(dataDir, "blobs")} (mode 0755)`), output);
    } finally {
      await registry.stop();
    }
    // The registry reports; it does not change modes behind the operator's back.
    assert.equal((await lstat(dataDir)).mode & 0o777, 0o755);

    const tight = join(work.path, "tight");
    await mkdir(tight, { mode: 0o700 });
    const quiet = await spawnRegistry(tight);
    try {
      await sleep(200);
      assert.doesNotMatch(quiet.output(), /readable by group or others/);
    } finally {
      await quiet.stop();
    }
  });

  it("tabbify auth warns the same way about its data dir", async () => {
    const dataDir = join(work.path, "auth");
    await mkdir(dataDir, { mode: 0o755 });
    await chmod(dataDir, 0o755);
    const auth = spawnTabbify(["auth", "--listen", "127.0.0.1:0", "--data", dataDir]);
    try {
      await auth.waitForLine(/listening on/);
      // A warn-level line of the auth's log (pretty by default, `--log-format json` as an object).
      assert.match(auth.output(), /\bwarn auth data dir is readable by group or others/);
      assert.ok(auth.output().includes(`chmod -R go-rwx '${dataDir}'`));
    } finally {
      await auth.stop();
    }
  });
});
