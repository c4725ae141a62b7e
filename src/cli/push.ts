import { randomBytes } from "node:crypto";
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, rm, stat, unlink } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { v7 as uuidv7 } from "uuid";
import { type AppLock, LOCK_FILE, readLock, writeLock } from "../artifacts/lock.js";
import { parseManifest, stampAppId } from "../artifacts/manifest.js";
import { type ArtifactStore, CLAIM_FILE, IMAGE_FILE, MANIFEST_FILE } from "../artifacts/store.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import { runPool } from "../core/pool.js";
import type { NodeRelease } from "../node/releases-client.js";
import type { DockerClient } from "./docker.js";
import { checkCopySources } from "./dockerfile-sources.js";
import { collectFiles, type LocalFile, singleFile } from "./files.js";
import {
  type AppIdSource,
  buildPushPlan,
  formatBytes,
  type PushInput,
  type PushPlan,
  type PushStep,
} from "./plan.js";
import { noProgress, type ProgressSink } from "./progress.js";

export interface PushOptions {
  dir: string;
  store: ArtifactStore;
  /** Describes the store for people: `local:/abs/dir` or `s3://bucket`. */
  storeName: string;
  nodeUrl: string;
  dryRun: boolean;
  /** Directories never uploaded even when inside the app dir (a local store living there). */
  skipDirs?: string[];
  docker: DockerClient;
  progress?: ProgressSink;
  /** Where the gzipped image is staged before upload; the store's staging dir is best. */
  stagingDir?: string;
}

/** What a push did (or, with --dry-run, would do): the CLI prints it. */
export interface PushResult {
  dryRun: boolean;
  appId: string;
  appIdSource: AppIdSource;
  name: string;
  version: number;
  /** What `latest` holds after the push: this version, or a higher one a parallel push published. */
  latest: number | null;
  files: number;
  bytes: number;
  url: string;
  store: string;
  plan: PushPlan;
  /** The release the node recorded for this version, when tcli knows a node to tell. */
  release?: NodeRelease;
  /**
   * Set when the node's rollout of this version failed and `latest` was taken back off it (see
   * ArtifactStore.withdrawLatest); `latest` above is then what it holds afterwards.
   */
  withdrawn?: { environment: string; error: string };
}

/** Parallel uploads: enough to hide per-request latency on S3 without flooding a small link. */
const UPLOAD_CONCURRENCY = 4;

/** `tcli push <dir>`: reads, plans, and unless dry-running executes. */
export async function pushApp(opts: PushOptions): Promise<PushResult> {
  const input = await readPushInput(opts);
  const plan = buildPushPlan(input, input.knownLatest + 1);
  if (opts.dryRun) return result(plan, true, null);
  return executePush(input, plan, opts);
}

/** Reads everything a plan needs: the manifest, the lock, the files, the store's latest version. */
export async function readPushInput(opts: PushOptions): Promise<PushInput> {
  const dir = resolve(opts.dir);
  const manifestPath = join(dir, MANIFEST_FILE);
  let source: string;
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) throw new TabbifyError("USAGE", `${opts.dir} is not a directory`);
    source = await readFile(manifestPath, "utf8");
  } catch (err) {
    if (err instanceof TabbifyError) throw err;
    if (isErrno(err, "ENOENT")) {
      throw new TabbifyError(
        "MANIFEST_MISSING",
        `${manifestPath} does not exist: every pushed app needs a manifest.toml (see examples/*/manifest.toml)`,
      );
    }
    if (isErrno(err, "EACCES"))
      throw new TabbifyError("FILE_UNREADABLE", `cannot read ${manifestPath}: permission denied`);
    throw err;
  }
  const manifest = parseManifest(source, manifestPath);
  const lock = await readLock(dir);

  let appId: string;
  let appIdSource: AppIdSource;
  if (manifest.app.id) {
    appId = manifest.app.id;
    appIdSource = "manifest";
  } else if (lock) {
    appId = lock.appId;
    appIdSource = "lock";
  } else {
    appId = uuidv7();
    appIdSource = "new";
  }

  const files = await appFiles(dir, manifest, opts.skipDirs ?? []);
  const hostPrograms = manifest.build?.kind === "docker" ? await checkCopySources(dir, manifest.build) : [];
  const storeLatest = await opts.store.latestVersion(appId);
  // The lock's number counts only when it belongs to this app id.
  const lockLatest = lock && lock.appId === appId ? lock.latestVersion : 0;
  return {
    dir,
    manifest,
    stampedManifest: stampAppId(source, appId),
    appId,
    appIdSource,
    lock,
    files,
    knownLatest: Math.max(storeLatest ?? 0, lockLatest),
    store: opts.storeName,
    nodeUrl: opts.nodeUrl,
    ...(hostPrograms.length > 0 ? { hostPrograms } : {}),
  };
}

/** Which files ship: the wasm entry alone for wasm apps, otherwise the whole directory. */
async function appFiles(
  dir: string,
  manifest: PushInput["manifest"],
  skipDirs: string[],
): Promise<LocalFile[]> {
  if (manifest.runtime.type === "wasm") {
    return [await singleFile(dir, manifest.runtime.entry!, "[runtime] entry")];
  }
  if (manifest.build?.kind === "docker") {
    await singleFile(dir, manifest.build.dockerfile, "[build] dockerfile");
  }
  const files = await collectFiles(dir, {
    // The manifest ships stamped; the lock is local bookkeeping; .tabbify/ holds the default local store.
    skipTopLevel: [MANIFEST_FILE, LOCK_FILE, ".tabbify"],
    skipDirs,
  });
  for (const f of files) {
    if (f.path === CLAIM_FILE || (manifest.build?.kind === "docker" && f.path === IMAGE_FILE)) {
      throw new TabbifyError(
        "FILE_RESERVED",
        `${f.path} is a name the artifact store uses itself: rename it or list it in .tabbifyignore`,
      );
    }
  }
  return files;
}

/**
 * Runs a plan. The claim may hand out a higher number than planned (another push got there
 * first); the plan is then rebuilt for that number. `v<N>/` is staging until the manifest lands
 * (readers refuse a version without one) and `latest` moves only after that, so a failure before
 * the manifest publishes nothing: what was uploaded is removed, and the claim is given back.
 */
async function executePush(input: PushInput, planned: PushPlan, opts: PushOptions): Promise<PushResult> {
  const { store } = opts;
  const progress = opts.progress ?? noProgress;
  const record = { claimedAt: new Date().toISOString(), by: `tcli push on ${hostname()}` };
  const version = await store.claimVersion(input.appId, planned.version, record);
  const plan = version === planned.version ? planned : buildPushPlan(input, version);
  const outcome: StepOutcome = { latest: null, imageBytes: 0, manifestStored: false };
  // Files a killed push of this app left behind; never worth failing this push over.
  await store.sweepAbandoned(input.appId).catch(() => []);
  progress.expect(plan.bytes);
  try {
    const steps = plan.steps.slice(1);
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      if (step.kind === "upload-file") {
        let j = i;
        while (j < steps.length && steps[j]!.kind === "upload-file") j++;
        const batch = steps.slice(i, j) as Extract<PushStep, { kind: "upload-file" }>[];
        await runPool(batch, UPLOAD_CONCURRENCY, async (s) => {
          await store.putFile(input.appId, version, s.path, s.source, s.size);
          progress.advance(s.size, s.path);
        });
        i = j - 1;
        continue;
      }
      await runStep(step, input, version, opts, progress, outcome);
    }
  } catch (err) {
    // Once the manifest is stored the version is complete and `latest` may already name it.
    // Before that, nothing was published: the files go, and so does the claim, so the failed push
    // does not use up the number.
    if (!outcome.manifestStored) {
      await store.discardVersion(input.appId, version).catch(() => {});
      await store.releaseClaim(input.appId, version).catch(() => false);
    }
    throw err;
  } finally {
    progress.end();
  }
  const done = result(plan, false, outcome.latest);
  done.bytes += outcome.imageBytes;
  return done;
}

/** What steps learn while running: the image's size, and where `latest` ended. */
interface StepOutcome {
  latest: number | null;
  imageBytes: number;
  /** The version's manifest is in the store: from here on the version is complete. */
  manifestStored: boolean;
}

async function runStep(
  step: Exclude<PushStep, { kind: "upload-file" }>,
  input: PushInput,
  version: number,
  opts: PushOptions,
  progress: ProgressSink,
  outcome: StepOutcome,
): Promise<void> {
  const { store } = opts;
  switch (step.kind) {
    case "claim":
      throw new Error("a plan claims once, first");
    case "write-lock": {
      const lock: AppLock = {
        appId: step.appId,
        latestVersion: Math.max(step.latestVersion, sameApp(input.lock, step.appId)),
      };
      await writeLock(input.dir, lock);
      return;
    }
    case "docker-build":
      await buildImage(step, opts.docker);
      return;
    case "docker-save": {
      const staging = opts.stagingDir ?? tmpdir();
      await mkdir(staging, { recursive: true });
      const file = join(staging, `image-${randomBytes(8).toString("hex")}.tar.gz`);
      try {
        // The raw tar streams through; counting it shows the save moving, the gzip size is what uploads.
        let raw = 0;
        const size = await opts.docker.saveGzipped(step.argv, file, (n) => {
          raw += n;
        });
        progress.expect(size);
        await store.ingestFile(input.appId, version, step.path, file, size);
        outcome.imageBytes = size;
        progress.advance(size, `${step.path} (${formatBytes(raw)} unpacked)`);
      } finally {
        await unlink(file).catch(() => {});
      }
      return;
    }
    case "upload-manifest":
      await store.putContent(input.appId, version, step.path, step.content);
      outcome.manifestStored = true;
      progress.advance(step.size, step.path);
      return;
    case "publish-latest":
      outcome.latest = await store.publishLatest(input.appId, step.version);
      return;
  }
}

function sameApp(lock: AppLock | null, appId: string): number {
  return lock && lock.appId === appId ? lock.latestVersion : 0;
}

function result(plan: PushPlan, dryRun: boolean, latest: number | null): PushResult {
  return {
    dryRun,
    appId: plan.appId,
    appIdSource: plan.appIdSource,
    name: plan.name,
    version: plan.version,
    latest,
    files: plan.files,
    bytes: plan.bytes,
    url: plan.url,
    store: plan.store,
    plan,
  };
}

/**
 * `docker build`, on the app directory as it is, or, with `[build] host_programs`, on a temporary
 * copy of the context holding those programs too (the app directory is never written to).
 */
async function buildImage(
  step: Extract<PushStep, { kind: "docker-build" }>,
  docker: DockerClient,
): Promise<void> {
  if (!step.copyIn) return docker.build(step.argv, step.cwd);
  const argv = [...step.argv];
  const context = resolve(step.cwd, argv.at(-1)!);
  const f = argv.indexOf("-f");
  const copy = await mkdtemp(join(tmpdir(), "tbf-context-"));
  try {
    await cp(context, copy, { recursive: true });
    for (const { from, to } of step.copyIn) {
      await copyFile(from, join(copy, to));
      await chmod(join(copy, to), 0o755);
    }
    argv[f + 1] = resolve(step.cwd, argv[f + 1]!);
    argv[argv.length - 1] = copy;
    await docker.build(argv, step.cwd);
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
}
