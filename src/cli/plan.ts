import { join } from "node:path";
import type { AppLock } from "../artifacts/lock.js";
import { LOCK_FILE } from "../artifacts/lock.js";
import type { AppManifest } from "../artifacts/manifest.js";
import { CLAIM_FILE, IMAGE_FILE, latestKey, MANIFEST_FILE, versionKey } from "../artifacts/store.js";
import type { LocalFile } from "./files.js";

/**
 * A push is data first: `buildPushPlan` turns what was read (manifest, files, ids) into a list
 * of steps, which `--dry-run` prints and the executor runs. Nothing here touches the disk,
 * the store or docker.
 */
export type PushStep =
  | { kind: "claim"; key: string; version: number }
  | { kind: "write-lock"; file: string; appId: string; latestVersion: number; when: "first" | "last" }
  | {
      kind: "docker-build";
      argv: string[];
      cwd: string;
      tag: string;
      /** `[build] host_programs`: copied into a temporary copy of the context, which is built instead. */
      copyIn?: Array<{ from: string; to: string }>;
    }
  | { kind: "docker-save"; argv: string[]; tag: string; key: string; path: string }
  | { kind: "upload-file"; key: string; path: string; source: string; size: number }
  | { kind: "upload-manifest"; key: string; path: string; content: string; size: number }
  | { kind: "publish-latest"; key: string; version: number };

/** Where the app id came from: the manifest's `[app].id`, `tabbify.lock`, or minted now. */
export type AppIdSource = "manifest" | "lock" | "new";

/** Everything read before planning: the inputs of `buildPushPlan`. */
export interface PushInput {
  dir: string;
  manifest: AppManifest;
  /** manifest.toml with `[app].id` stamped: what is uploaded. */
  stampedManifest: string;
  appId: string;
  appIdSource: AppIdSource;
  lock: AppLock | null;
  /** The files shipped beside the manifest (all of the directory, or just the wasm entry). */
  files: LocalFile[];
  /** The highest version the store or the lock knows of; the push claims from one above. */
  knownLatest: number;
  /** Describes the store for people: `local:/abs/dir` or `s3://bucket`. */
  store: string;
  /** Base URL of the node that proxies `/app/<uuid>`. */
  nodeUrl: string;
  /** `[build] host_programs`, found on this machine's PATH. */
  hostPrograms?: Array<{ name: string; path: string }>;
}

export interface PushPlan {
  appId: string;
  appIdSource: AppIdSource;
  name: string;
  runtime: AppManifest["runtime"]["type"];
  version: number;
  store: string;
  /** The docker image tag, for `[build].kind = "docker"`. */
  imageTag?: string;
  steps: PushStep[];
  /** Files uploaded (manifest and image included). */
  files: number;
  /** Bytes known before running; an image's size is only known once saved. */
  bytes: number;
  url: string;
}

export function imageTag(appId: string, version: number): string {
  return `tbf-img-${appId}-v${version}`;
}

export function appUrl(nodeUrl: string, appId: string): string {
  return `${nodeUrl.replace(/\/+$/, "")}/app/${appId}`;
}

/** The steps that publish `input` as `version`; pure, so it can be rebuilt when a claim moves N. */
export function buildPushPlan(input: PushInput, version: number): PushPlan {
  const { appId, manifest } = input;
  const steps: PushStep[] = [{ kind: "claim", key: versionKey(appId, version, CLAIM_FILE), version }];
  const lockFile = join(input.dir, LOCK_FILE);
  if (input.appIdSource === "new") {
    // Recorded before uploading, so a push that fails half-way keeps the same id next time.
    steps.push({ kind: "write-lock", file: lockFile, appId, latestVersion: 0, when: "first" });
  }
  let tag: string | undefined;
  if (manifest.build?.kind === "docker") {
    tag = imageTag(appId, version);
    const dockerfile = manifest.build.dockerfile;
    steps.push({
      kind: "docker-build",
      argv: ["docker", "build", "-t", tag, "-f", dockerfile, manifest.build.context],
      cwd: input.dir,
      tag,
      ...(input.hostPrograms?.length
        ? { copyIn: input.hostPrograms.map((p) => ({ from: p.path, to: p.name })) }
        : {}),
    });
    steps.push({
      kind: "docker-save",
      argv: ["docker", "save", tag],
      tag,
      key: versionKey(appId, version, IMAGE_FILE),
      path: IMAGE_FILE,
    });
  }
  for (const f of input.files) {
    steps.push({
      kind: "upload-file",
      key: versionKey(appId, version, f.path),
      path: f.path,
      source: f.source,
      size: f.size,
    });
  }
  const manifestSize = Buffer.byteLength(input.stampedManifest);
  steps.push({
    kind: "upload-manifest",
    key: versionKey(appId, version, MANIFEST_FILE),
    path: MANIFEST_FILE,
    content: input.stampedManifest,
    size: manifestSize,
  });
  steps.push({ kind: "publish-latest", key: latestKey(appId), version });
  steps.push({ kind: "write-lock", file: lockFile, appId, latestVersion: version, when: "last" });

  const plan: PushPlan = {
    appId,
    appIdSource: input.appIdSource,
    name: manifest.app.name,
    runtime: manifest.runtime.type,
    version,
    store: input.store,
    steps,
    files: input.files.length + 1 + (tag ? 1 : 0),
    bytes: input.files.reduce((sum, f) => sum + f.size, manifestSize),
    url: appUrl(input.nodeUrl, appId),
  };
  if (tag) plan.imageTag = tag;
  return plan;
}

/** The plan as `--dry-run` prints it: every step, every key with its size, every command. */
export function formatPlan(plan: PushPlan): string {
  const idFrom = {
    manifest: "from manifest.toml",
    lock: "from tabbify.lock",
    new: "new, not yet in tabbify.lock",
  };
  const lines = [
    `plan: push ${plan.name} (${plan.runtime}) as app ${plan.appId} v${plan.version} to ${plan.store}`,
    `  app id ${plan.appId} (${idFrom[plan.appIdSource]})`,
  ];
  for (const step of plan.steps) lines.push(`  ${formatStep(step)}`);
  lines.push(
    `  total: ${plan.files} files, ${formatBytes(plan.bytes)}${plan.imageTag ? " + the image" : ""}`,
  );
  lines.push(`  url: ${plan.url}`);
  lines.push("dry run: nothing was uploaded, docker was not run, tabbify.lock was not written");
  return `${lines.join("\n")}\n`;
}

function formatStep(step: PushStep): string {
  switch (step.kind) {
    case "claim":
      return `claim    ${step.key}  (version ${step.version}, or the next free one)`;
    case "write-lock":
      return `lock     ${step.file}  app_id = "${step.appId}", latest_version = ${step.latestVersion}`;
    case "docker-build":
      return step.copyIn
        ? `run      (cd ${step.cwd} && ${step.argv.join(" ")})  on a copy of the context with ${step.copyIn.map((c) => `${c.from} as ${c.to}`).join(", ")}`
        : `run      (cd ${step.cwd} && ${step.argv.join(" ")})`;
    case "docker-save":
      return `run      ${step.argv.join(" ")} | gzip  → upload ${step.key}  (size known after save)`;
    case "upload-file":
      return `upload   ${step.key}  ${formatBytes(step.size)}`;
    case "upload-manifest":
      return `upload   ${step.key}  ${formatBytes(step.size)}  (stamped with app.id)`;
    case "publish-latest":
      return `publish  ${step.key} = "${step.version}"`;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
