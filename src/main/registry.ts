// `tabbify registry`: the OCI Distribution registry on /v2 (src/registry), wired from flags/env;
// `tabbify registry gc`: its blob garbage collection, over the same storage.

import { mkdir, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { formatBytes } from "../cli/plan.js";
import { parseDurationSeconds } from "../core/duration.js";
import { isErrno, isTabbifyError, TabbifyError } from "../core/errors.js";
import { createLogger } from "../core/log.js";
import { REGISTRY_ULA } from "../mesh/ula.js";
import type { GcReport } from "../registry/gc.js";
import { collectWithRules, type GcRules } from "../registry/gc-schedule.js";
import { defaultServiceName, defaultStagingDir, RegistryService, startRegistry } from "../registry/index.js";
import { defaultMaxUploadsPerTenant } from "../registry/repository.js";
import { LocalDriver } from "../storage/local.js";
import type { S3Driver } from "../storage/s3.js";
import { warnIfPublic } from "./bind-warning.js";
import { intOption, type OptionSpec, optionsHelp, parseListen, parseOptions, untilSignal } from "./flags.js";
import { applyLogOptions, logOptions } from "./log-options.js";
import { joinMesh, meshJoinOptions } from "./mesh-join.js";

export const registryOptions: OptionSpec[] = [
  { flag: "listen", env: "REGISTRY_LISTEN", default: "127.0.0.1:5000", help: "address to serve /v2 on" },
  {
    flag: "mesh",
    env: "REGISTRY_MESH",
    default: "none",
    help: `none, or wireguard: join the mesh as ${REGISTRY_ULA} (a join token granting it) and answer only there, on --listen's port`,
  },
  ...meshJoinOptions,
  {
    flag: "data",
    env: "REGISTRY_DATA_DIR",
    default: "./.tabbify/registry",
    help: "data dir (local storage, upload staging)",
  },
  { flag: "storage", env: "REGISTRY_STORAGE", default: "local", help: "storage driver: local or s3" },
  { flag: "auth-url", env: "REGISTRY_AUTH_URL", help: "auth service base URL; unset = anonymous dev mode" },
  {
    flag: "service",
    env: "REGISTRY_SERVICE",
    default: defaultServiceName,
    help: "service name in auth challenges",
  },
  { flag: "s3-bucket", env: "REGISTRY_S3_BUCKET", help: "bucket for s3 storage" },
  { flag: "s3-region", env: "REGISTRY_S3_REGION", help: "region for s3 storage" },
  { flag: "s3-endpoint", env: "REGISTRY_S3_ENDPOINT", help: "S3-compatible endpoint URL (path-style)" },
  {
    flag: "max-uploads-per-tenant",
    env: "REGISTRY_MAX_UPLOADS_PER_TENANT",
    default: String(defaultMaxUploadsPerTenant),
    help: "open upload sessions one tenant may hold; past it, 429 TOOMANYREQUESTS",
  },
  {
    flag: "immutable-tags",
    env: "REGISTRY_IMMUTABLE_TAGS",
    multiple: true,
    help: "repo:tag glob whose tags keep their first digest, e.g. 'acme/*:v*' (repeatable; env comma-separated)",
  },
  {
    flag: "upload-max-age",
    env: "REGISTRY_UPLOAD_MAX_AGE",
    default: "24h",
    help: "upload sessions untouched this long are deleted by the sweep (90s, 30m, 1h, 7d)",
  },
  {
    flag: "upload-sweep-interval",
    env: "REGISTRY_UPLOAD_SWEEP_INTERVAL",
    default: "10m",
    help: "how often stale upload sessions are swept (90s, 30m, 1h)",
  },
  {
    flag: "notify",
    env: "REGISTRY_NOTIFY",
    multiple: true,
    help: "URL that gets push/delete events (Distribution's envelope) from a durable on-disk queue, e.g. http://127.0.0.1:8090/api/v1/registry/events (repeatable; bearer from env REGISTRY_NOTIFY_TOKEN)",
  },
  {
    flag: "upstream-cmd",
    env: "REGISTRY_UPSTREAM_CMD",
    help: "wrapper mode: command that runs an upstream registry as a supervised child",
  },
  {
    flag: "upstream-url",
    env: "REGISTRY_UPSTREAM_URL",
    help: "wrapper mode: where the upstream registry listens (e.g. http://127.0.0.1:5001)",
  },
  ...logOptions,
];

/** The storage options `gc` shares with the registry, so it runs against the same dir or bucket. */
const storageFlags = new Set(["data", "storage", "s3-bucket", "s3-region", "s3-endpoint"]);

/** The collection rules `gc` and the registry's `--gc-interval` runs share. */
const gcRuleOptions: OptionSpec[] = [
  {
    flag: "delete-untagged",
    env: "REGISTRY_GC_DELETE_UNTAGGED",
    boolean: true,
    help: "also remove manifests no tag reaches (index children, referrers and subjects of kept manifests stay)",
  },
  {
    flag: "min-age",
    env: "REGISTRY_GC_MIN_AGE",
    default: "1h",
    help: "grace period: unreferenced blobs and untagged manifests newer than this stay (90s, 30m, 1h, 7d, 0)",
  },
  {
    flag: "keep-releases-from",
    env: "REGISTRY_GC_KEEP_RELEASES_FROM",
    help: "node URL: its apps' release manifests are collected unless running, promotable or among the last --keep-releases (bearer from env REGISTRY_GC_NODE_TOKEN); a release goes only after two runs found it unreferenced",
  },
  {
    flag: "keep-releases",
    env: "REGISTRY_GC_KEEP_RELEASES",
    default: "10",
    help: "with --keep-releases-from: releases kept per app and per environment",
  },
];

export const gcOptions: OptionSpec[] = [
  ...registryOptions.filter((o) => storageFlags.has(o.flag)),
  {
    flag: "dry-run",
    env: "REGISTRY_GC_DRY_RUN",
    boolean: true,
    help: "report what would be removed; delete nothing",
  },
  ...gcRuleOptions,
  { flag: "json", boolean: true, help: "print the report as one JSON object" },
];

registryOptions.push(
  {
    flag: "gc-interval",
    env: "REGISTRY_GC_INTERVAL",
    default: "0",
    help: "run the garbage collector inside the registry this often (30m, 1h, 1d; 0: never), under the gc flags below; runs never overlap",
  },
  ...gcRuleOptions,
);

const gcUsage = "tabbify registry gc [flags]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv[0] === "gc") {
    try {
      return await gc(argv.slice(1), env);
    } catch (err) {
      if (!isTabbifyError(err, "USAGE")) throw err;
      process.stderr.write(`tabbify registry gc: ${err.message}\n\n${optionsHelp(gcUsage, gcOptions)}`);
      return 2;
    }
  }
  const opts = parseOptions(argv, env, registryOptions);
  if (opts.help) {
    process.stdout.write(
      `${optionsHelp("tabbify registry [flags]", registryOptions)}\n\`tabbify registry gc --help\` lists the garbage collector's flags.\n`,
    );
    return 0;
  }
  const v = opts.values;
  const { host: listenHost, port } = parseListen(v.listen!);
  const dataDir = resolve(v.data!);
  applyLogOptions(v);
  const log = createLogger("registry");
  if (v.mesh !== "none" && v.mesh !== "wireguard") {
    throw new TabbifyError("USAGE", `--mesh wants none or wireguard, got "${v.mesh}"`);
  }
  // Seed 001: in mesh mode the registry is reachable only on its fixed mesh address, so it joins
  // before it listens. Its data dir keeps the WireGuard identity, hence the address, sticky.
  if (v.mesh === "wireguard") await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const meshJoiner =
    v.mesh === "wireguard"
      ? await joinMesh({
          values: v,
          env,
          dataDir,
          displayName: "registry",
          tags: ["registry"],
          requestedUla: REGISTRY_ULA,
          logger: log,
        })
      : undefined;
  const host = meshJoiner ? REGISTRY_ULA : listenHost;
  warnIfPublic("registry", host);
  const maxUploadsPerTenant = intOption(v["max-uploads-per-tenant"], "max-uploads-per-tenant");
  const staleUploadMs = parseDuration(v["upload-max-age"]!, "upload-max-age");
  const cleanupIntervalMs = parseDuration(v["upload-sweep-interval"]!, "upload-sweep-interval");
  if (staleUploadMs === 0 || cleanupIntervalMs === 0) {
    throw new TabbifyError("USAGE", "--upload-max-age and --upload-sweep-interval must be more than 0");
  }
  const gcIntervalMs = parseDuration(v["gc-interval"]!, "gc-interval");
  const periodicGc = gcIntervalMs > 0 ? gcRules(v, opts.flags, env) : undefined;
  if (periodicGc?.minAgeMs === 0) {
    // The registry pushes while it collects: a blob of a push in progress is young, not garbage.
    throw new TabbifyError("USAGE", "--gc-interval needs a --min-age above 0 (pushes run meanwhile)");
  }
  const driver = await s3Driver(v);

  const registry = await startRegistry({
    host,
    port,
    dataDir,
    maxUploadsPerTenant,
    staleUploadMs,
    cleanupIntervalMs,
    immutableTags: opts.lists["immutable-tags"] ?? [],
    service: v.service!,
    log,
    ...(driver ? { driver } : {}),
    ...(v["auth-url"] ? { authUrl: v["auth-url"] } : {}),
    ...(v["upstream-url"] ? { upstreamUrl: v["upstream-url"] } : {}),
    ...(v["upstream-cmd"] ? { upstreamCmd: v["upstream-cmd"] } : {}),
    notify: notifyEndpoints(opts.lists.notify ?? [], env.REGISTRY_NOTIFY_TOKEN || undefined),
    ...(periodicGc ? { gc: { intervalMs: gcIntervalMs, rules: periodicGc } } : {}),
  });
  const storage = driver ? `s3 bucket ${v["s3-bucket"]}` : `local ${dataDir}`;
  const mode =
    registry.mode === "auth"
      ? `auth via ${v["auth-url"]} (tenant namespaces enforced)`
      : "anonymous dev mode: no auth, no namespace rule (set REGISTRY_AUTH_URL to require tokens)";
  const upstream = v["upstream-url"] ? `, wrapping ${v["upstream-url"]}` : "";
  process.stdout.write(
    `tabbify registry listening on ${registry.url} (${mode}; storage ${storage}${upstream})\n`,
  );

  const signal = await untilSignal();
  log.info("shutting down", { signal });
  await registry.close();
  await meshJoiner?.stop().catch(() => {});
  return 0;
}

/** `--notify` URLs, each with the one bearer token the environment holds. */
function notifyEndpoints(urls: readonly string[], token: string | undefined) {
  return urls.map((url) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TabbifyError("USAGE", `--notify: "${url.slice(0, 200)}" is not a URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw new TabbifyError("USAGE", `--notify: ${parsed.protocol} is not http or https`);
    if (parsed.username || parsed.password)
      throw new TabbifyError("USAGE", "--notify: put the token in REGISTRY_NOTIFY_TOKEN, not in the URL");
    return { url, ...(token ? { token } : {}) };
  });
}

/** The S3 driver the storage options ask for, or undefined for local storage. */
async function s3Driver(v: Record<string, string | undefined>): Promise<S3Driver | undefined> {
  if (v.storage === "local") return undefined;
  if (v.storage !== "s3")
    throw new TabbifyError("USAGE", `--storage must be local or s3, got "${v.storage}"`);
  if (!v["s3-bucket"])
    throw new TabbifyError("USAGE", "REGISTRY_STORAGE=s3 needs --s3-bucket / REGISTRY_S3_BUCKET");
  const { S3Driver: Driver } = await import("../storage/s3.js");
  return new Driver({
    bucket: v["s3-bucket"],
    ...(v["s3-region"] ? { region: v["s3-region"] } : {}),
    ...(v["s3-endpoint"] ? { endpoint: v["s3-endpoint"], forcePathStyle: true } : {}),
  });
}

async function gc(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, gcOptions);
  if (opts.help) {
    process.stdout.write(
      `${optionsHelp(gcUsage, gcOptions)}\nMarks every blob a manifest of any repository references and removes the rest\n(older than --min-age), with the repository links to them. It may run while the registry\nserves: --min-age keeps the blobs of pushes in progress.\n`,
    );
    return 0;
  }
  const v = opts.values;
  const minAgeMs = parseMinAge(v["min-age"]!);
  const dataDir = resolve(v.data!);
  const s3 = await s3Driver(v);
  if (!s3) {
    // An empty report for a mistyped --data would read as "nothing to collect".
    const isDir = await stat(dataDir).then(
      (s) => s.isDirectory(),
      (err: unknown) => {
        if (isErrno(err, "ENOENT")) return false;
        throw err;
      },
    );
    if (!isDir) {
      throw new TabbifyError(
        "REGISTRY_DATA_MISSING",
        `no registry data at ${dataDir} (--data / REGISTRY_DATA_DIR)`,
        { dataDir },
      );
    }
  }
  const driver = s3 ?? new LocalDriver(dataDir);
  if (minAgeMs === 0 && !opts.flags["dry-run"]) {
    process.stderr.write(
      "tabbify registry gc: --min-age 0 can delete the blobs of a push in progress; run it only while nothing pushes\n",
    );
  }
  try {
    const service = new RegistryService({ driver, stagingDir: defaultStagingDir(driver, dataDir) });
    const dryRun = opts.flags["dry-run"] === true;
    const report = await collectWithRules(service, dataDir, gcRules(v, opts.flags, env), { dryRun });
    if (opts.flags.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      for (const w of report.warnings) process.stderr.write(`tabbify registry gc: warning: ${w}\n`);
      const storage = s3 ? `s3 bucket ${v["s3-bucket"]}` : `local ${dataDir}`;
      process.stdout.write(formatGcReport(report, storage));
    }
  } finally {
    s3?.close();
  }
  return 0;
}

/** The gc rule flags (`gc` and `--gc-interval` alike), checked. */
function gcRules(
  v: Record<string, string | undefined>,
  flags: Record<string, boolean | undefined>,
  env: NodeJS.ProcessEnv,
): GcRules {
  const rules: GcRules = {
    deleteUntagged: flags["delete-untagged"] === true,
    minAgeMs: parseMinAge(v["min-age"]!),
    keepReleases: 10,
  };
  const from = v["keep-releases-from"];
  if (from === undefined) return rules;
  const keep = intOption(v["keep-releases"], "keep-releases");
  if (keep === undefined || keep < 1) throw new TabbifyError("USAGE", "--keep-releases must be at least 1");
  if (!/^https?:\/\//.test(from))
    throw new TabbifyError("USAGE", "--keep-releases-from wants the node's http(s) URL");
  return {
    ...rules,
    keepReleasesFrom: from,
    keepReleases: keep,
    ...(env.REGISTRY_GC_NODE_TOKEN ? { nodeToken: env.REGISTRY_GC_NODE_TOKEN } : {}),
  };
}

/** `--min-age`: `90s`, `30m`, `1h`, `7d` or plain seconds, 0 allowed → milliseconds. */
export function parseMinAge(value: string): number {
  return parseDuration(value, "min-age");
}

/** A duration flag: `90s`, `30m`, `1h`, `7d` or plain seconds, 0 allowed → milliseconds. */
export function parseDuration(value: string, flag: string): number {
  // At most 10^9 s (~31 years): anything longer is a typo, and ms stay a safe integer.
  return parseDurationSeconds(value, flag, { min: 0, max: 1e9, hint: "0: none" }) * 1000;
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  for (const [unit, size] of [
    ["d", 86400],
    ["h", 3600],
    ["m", 60],
  ] as const) {
    if (s >= size && s % size === 0) return `${s / size}${unit}`;
  }
  return `${s}s`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The report as a person reads it: what was marked, what was (or would be) swept, a summary. */
export function formatGcReport(report: GcReport, storage: string): string {
  const dry = report.dryRun;
  const lines = [
    `tabbify registry gc: ${storage}; --min-age ${formatDuration(report.minAgeMs)}; untagged manifests ${
      report.deleteUntagged ? "removed" : "kept"
    }${dry ? "; dry run: nothing is deleted" : ""}`,
  ];
  for (const repo of report.repositories) {
    for (const m of repo.manifests) lines.push(`${repo.name}: marking manifest ${m.digest} (${m.reason})`);
    for (const blob of repo.blobs) lines.push(`${repo.name}: marking blob ${blob}`);
  }
  for (const m of report.manifestsRemoved) {
    lines.push(
      dry
        ? `${m.repository}: manifest eligible for deletion: ${m.digest}`
        : `${m.repository}: deleted manifest ${m.digest}`,
    );
  }
  for (const t of report.tagsRemoved ?? []) {
    lines.push(
      dry
        ? `${t.repository}: tag eligible for deletion: ${t.tag} (release ${t.digest})`
        : `${t.repository}: deleted tag ${t.tag} (release ${t.digest})`,
    );
  }
  for (const c of report.releaseCandidates ?? []) {
    lines.push(`${c}: unreferenced release manifest, removed if the next run finds it so again`);
  }
  for (const b of report.blobsRemoved) {
    const size = formatBytes(b.size);
    lines.push(
      dry ? `blob eligible for deletion: ${b.digest} (${size})` : `deleted blob ${b.digest} (${size})`,
    );
  }
  for (const l of report.linksRemoved) {
    lines.push(
      dry
        ? `${l.repository}: layer link eligible for deletion: ${l.digest} (${l.reason})`
        : `${l.repository}: deleted layer link ${l.digest} (${l.reason})`,
    );
  }
  for (const b of report.blobsYoung) {
    lines.push(
      `kept, younger than --min-age: blob ${b.digest} (${formatBytes(b.size)}, last written ${b.modified})`,
    );
  }
  const kept = report.repositories.reduce((n, r) => n + r.manifests.length, 0);
  const would = dry ? "would be " : "";
  lines.push(
    [
      `summary${dry ? " (dry run, nothing deleted)" : ""}: ${report.repositories.length} ${report.repositories.length === 1 ? "repository" : "repositories"}`,
      `${plural(kept, "manifest")} kept, ${report.manifestsRemoved.length} ${would}removed`,
      `${plural(report.blobsKept, "blob")} kept (${report.blobsYoung.length} younger than --min-age), ${report.blobsRemoved.length} ${would}removed`,
      `${formatBytes(report.bytesFreed)} ${would}freed (${report.bytesFreed} bytes)`,
      `${plural(report.linksRemoved.length, "link")} ${would}removed`,
      `${plural(report.uploadsRemoved, "stale upload session")} ${would}removed`,
    ].join("; "),
  );
  return `${lines.join("\n")}\n`;
}
