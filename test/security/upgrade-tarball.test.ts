/**
 * Attacks on release unpacking: a tarball that tries to write outside its release directory
 * (`..`, absolute paths, entries outside package/) or to plant a link (symlink, hard link) that
 * a later entry or the platform would follow is refused, and nothing lands outside the target.
 * The tarballs are made with GNU tar, the way an attacker would.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../../src/core/errors.js";
import { unpackRelease } from "../../src/upgrade/releases.js";
import { extractRelease } from "../../src/upgrade/tar-extract.js";
import { repoRoot, tempDir } from "../support/tools.js";

describe("upgrade: hostile release tarballs", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  before(async () => {
    dir = await tempDir("tabbify-upgrade-tar");
  });
  after(async () => {
    await dir?.remove();
  });

  /** A tarball of `files` (path → content, or {symlink} / {hardlink}) built from a scratch tree. */
  function tarball(build: (root: string) => string[], extra: string[] = []): string {
    const root = join(dir.path, `src-${n}`);
    mkdirSync(root, { recursive: true });
    const members = build(root);
    const out = join(dir.path, `t-${n++}.tgz`);
    execFileSync("tar", ["-czf", out, "-C", root, ...extra, ...members]);
    return out;
  }

  async function refused(tgz: string, pattern: RegExp): Promise<string> {
    const target = join(dir.path, `target-${n++}`);
    mkdirSync(target);
    await assert.rejects(extractRelease(tgz, target), (err: unknown) => {
      assert.ok(isTabbifyError(err, "RELEASE_UNSAFE"), String(err));
      assert.match((err as Error).message, pattern);
      return true;
    });
    return target;
  }

  it("refuses a .. path and writes nothing outside the target", async () => {
    // -P keeps the member name as given; the transform writes the name an attacker wants.
    const tgz = tarball(
      (root) => {
        writeFileSync(join(root, "escape.txt"), "pwned");
        return ["escape.txt"];
      },
      ["-P", "--transform", "s,^escape,package/../../escape,"],
    );
    const target = await refused(tgz, /escapes the release directory/);
    assert.equal(existsSync(join(target, "..", "escape.txt")), false);
    assert.equal(existsSync(join(target, "..", "..", "escape.txt")), false);
  });

  it("refuses an absolute path", async () => {
    const tgz = tarball(
      (root) => {
        writeFileSync(join(root, "abs.txt"), "pwned");
        return [join(root, "abs.txt")];
      },
      ["-P"],
    );
    await refused(tgz, /absolute path/);
  });

  it("refuses entries outside package/", async () => {
    const tgz = tarball((root) => {
      writeFileSync(join(root, "stray.txt"), "x");
      return ["stray.txt"];
    });
    await refused(tgz, /not under package\//);
  });

  it("refuses a symlink pointing out of the release, then a file written through it", async () => {
    const outside = join(dir.path, "outside");
    mkdirSync(outside);
    const tgz = tarball((root) => {
      mkdirSync(join(root, "package"));
      symlinkSync(outside, join(root, "package", "link"));
      return ["package/link"];
    });
    // GNU tar appends a file "through" the link as package/link/owned.txt.
    const target = await refused(tgz, /is a symlink/);
    assert.deepEqual(readdirSync(outside), []);
    assert.equal(existsSync(join(target, "link")), false);
  });

  it("refuses a hard link", async () => {
    const tgz = tarball((root) => {
      mkdirSync(join(root, "package"));
      writeFileSync(join(root, "package", "a.txt"), "a");
      execFileSync("ln", [join(root, "package", "a.txt"), join(root, "package", "b.txt")]);
      return ["package/a.txt", "package/b.txt"];
    });
    await refused(tgz, /hard link/);
  });

  it("unpacks a plain package and refuses a non-tabbify one before running anything from it", async () => {
    const tgz = tarball((root) => {
      mkdirSync(join(root, "package", "bin"), { recursive: true });
      writeFileSync(
        join(root, "package", "package.json"),
        JSON.stringify({ name: "evil", version: "9.9.9" }),
      );
      writeFileSync(join(root, "package", "bin", "x.js"), "process.exit(0)");
      return ["package"];
    });
    const target = join(dir.path, `plain-${n++}`);
    mkdirSync(target);
    await extractRelease(tgz, target);
    assert.ok(lstatSync(join(target, "bin", "x.js")).isFile());
    const data = join(dir.path, "data");
    await assert.rejects(
      unpackRelease(data, tgz, {
        nodeModules: join(repoRoot, "node_modules"),
        running: { version: "0.0.1", dir: repoRoot },
      }),
      /package is not tabbify/,
    );
    // The staging directory is gone: nothing of a refused release stays on disk.
    assert.deepEqual(readdirSync(join(data, "releases")), []);
  });
});
