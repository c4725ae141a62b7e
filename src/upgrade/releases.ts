/**
 * Platform releases on disk, under `<data>/releases/`: one directory per version, unpacked from
 * an `npm pack` tarball and verified before anything runs from it, and `state.json` naming the
 * releases in the order they became current (the last is current). The tree `tabbify up` was
 * started from counts as the first release, so a rollback can return to it. The three newest
 * releases are kept; older directories are removed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, realpath, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { extractRelease } from "./tar-extract.js";

export interface PlatformRelease {
  version: string;
  /** The package root: `dist/src/main/tabbify.js` is the entry. */
  dir: string;
}

interface ReleaseState {
  history: PlatformRelease[];
}

export const releasesKept = 3;
const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/;

export function releaseEntry(release: Pick<PlatformRelease, "dir">): string {
  return join(release.dir, "dist", "src", "main", "tabbify.js");
}

export function releasesDir(dataDir: string): string {
  return join(resolve(dataDir), "releases");
}

export async function readReleaseState(dataDir: string): Promise<ReleaseState> {
  try {
    const raw = JSON.parse(await readFile(join(releasesDir(dataDir), "state.json"), "utf8")) as ReleaseState;
    return { history: Array.isArray(raw.history) ? raw.history : [] };
  } catch {
    return { history: [] };
  }
}

async function writeReleaseState(dataDir: string, state: ReleaseState): Promise<void> {
  const dir = releasesDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.state-${process.pid}.json`);
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, join(dir, "state.json"));
}

/** The release `tabbify up` should run: the current one when its entry exists on disk. */
export async function currentRelease(dataDir: string): Promise<PlatformRelease | undefined> {
  const last = (await readReleaseState(dataDir)).history.at(-1);
  return last && existsSync(releaseEntry(last)) ? last : undefined;
}

/** The release before the current one, for `--rollback`. */
export async function previousRelease(dataDir: string): Promise<PlatformRelease | undefined> {
  const prior = (await readReleaseState(dataDir)).history.at(-2);
  return prior && existsSync(releaseEntry(prior)) ? prior : undefined;
}

/**
 * Makes `next` current. `running` is what ran until now (recorded first when the history is
 * empty). A rollback (next is the one before current) drops the current one from the history.
 * Release directories under releases/ that fall out of the last three are removed.
 */
export async function commitRelease(
  dataDir: string,
  running: PlatformRelease,
  next: PlatformRelease,
): Promise<void> {
  const state = await readReleaseState(dataDir);
  if (state.history.length === 0) state.history.push(running);
  const prior = state.history.at(-2);
  if (prior && prior.dir === next.dir) state.history.pop();
  else state.history.push(next);
  const kept = state.history.slice(-releasesKept);
  await writeReleaseState(dataDir, { history: kept });
  const keptDirs = new Set(kept.map((r) => r.dir));
  for (const dropped of state.history.slice(0, -releasesKept)) {
    if (!keptDirs.has(dropped.dir) && dropped.dir.startsWith(`${releasesDir(dataDir)}/`)) {
      await rm(dropped.dir, { recursive: true, force: true });
    }
  }
}

function runEntry(entry: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [entry, ...args],
      { timeout: timeoutMs, env: { PATH: process.env.PATH ?? "" } },
      (err, stdout, stderr) => {
        if (err) {
          fail(
            new TabbifyError(
              "RELEASE_INVALID",
              `\`tabbify ${args.join(" ")}\` of the new release failed: ${stderr.trim().split("\n").at(-1) ?? err.message}`,
            ),
          );
        } else done(stdout.trim());
      },
    );
  });
}

/**
 * Unpacks `tarball` beside the running release and proves it can run: its package is tabbify,
 * `tabbify --version` prints its package version, and `tabbify --self-check` passes. The release
 * shares `nodeModules` (a symlink) since upgrades happen offline; see docs/DECISIONS.md.
 */
export async function unpackRelease(
  dataDir: string,
  tarball: string,
  opts: { nodeModules: string; running: PlatformRelease },
): Promise<PlatformRelease> {
  const root = releasesDir(dataDir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const staging = await mkdtemp(join(root, ".incoming-"));
  try {
    await extractRelease(tarball, staging).catch((err: unknown) => {
      // A file that is no gzip'd tar at all (zlib, stream errors) is a bad release, not a fault here.
      if (err instanceof TabbifyError) throw err;
      throw new TabbifyError("RELEASE_INVALID", `the tarball does not unpack: ${(err as Error).message}`);
    });
    let pkg: { name?: unknown; version?: unknown };
    try {
      pkg = JSON.parse(await readFile(join(staging, "package.json"), "utf8"));
    } catch {
      throw new TabbifyError("RELEASE_INVALID", "the tarball has no readable package/package.json");
    }
    if (pkg.name !== "tabbify")
      throw new TabbifyError("RELEASE_INVALID", "the tarball's package is not tabbify");
    const version = pkg.version;
    if (typeof version !== "string" || !VERSION.test(version)) {
      throw new TabbifyError(
        "RELEASE_INVALID",
        `the tarball's version ${JSON.stringify(version)} is not a release version`,
      );
    }
    if (version === opts.running.version) {
      throw new TabbifyError("RELEASE_RUNNING", `version ${version} is the one running`);
    }
    const entry = releaseEntry({ dir: staging });
    if (!existsSync(entry))
      throw new TabbifyError(
        "RELEASE_INVALID",
        "the tarball has no dist/src/main/tabbify.js (not a built tree)",
      );
    await symlink(await realpath(opts.nodeModules), join(staging, "node_modules"));
    const printed = await runEntry(entry, ["--version"], 20_000);
    if (printed !== version) {
      throw new TabbifyError(
        "RELEASE_INVALID",
        `\`tabbify --version\` printed ${JSON.stringify(printed)}, not ${version}`,
      );
    }
    await runEntry(entry, ["--self-check"], 60_000);
    const dir = join(root, version);
    await rm(dir, { recursive: true, force: true });
    await rename(staging, dir);
    return { version, dir };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
