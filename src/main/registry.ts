// `tabbify registry`: the OCI Distribution registry on /v2 (src/registry), wired from flags/env.
import { resolve } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { createLogger } from "../core/log.js";
import { defaultServiceName, startRegistry } from "../registry/index.js";
import type { StorageDriver } from "../storage/driver.js";
import { type OptionSpec, optionsHelp, parseListen, parseOptions, untilSignal } from "./flags.js";

export const registryOptions: OptionSpec[] = [
  { flag: "listen", env: "REGISTRY_LISTEN", default: "127.0.0.1:5000", help: "address to serve /v2 on" },
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
    flag: "upstream-cmd",
    env: "REGISTRY_UPSTREAM_CMD",
    help: "wrapper mode: command that runs an upstream registry as a supervised child",
  },
  {
    flag: "upstream-url",
    env: "REGISTRY_UPSTREAM_URL",
    help: "wrapper mode: where the upstream registry listens (e.g. http://127.0.0.1:5001)",
  },
];

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, registryOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify registry [flags]", registryOptions));
    return 0;
  }
  const v = opts.values;
  const { host, port } = parseListen(v.listen!);
  const dataDir = resolve(v.data!);
  const log = createLogger("registry");

  let driver: StorageDriver | undefined;
  if (v.storage === "s3") {
    if (!v["s3-bucket"])
      throw new TabbifyError("USAGE", "REGISTRY_STORAGE=s3 needs --s3-bucket / REGISTRY_S3_BUCKET");
    const { S3Driver } = await import("../storage/s3.js");
    driver = new S3Driver({
      bucket: v["s3-bucket"],
      ...(v["s3-region"] ? { region: v["s3-region"] } : {}),
      ...(v["s3-endpoint"] ? { endpoint: v["s3-endpoint"], forcePathStyle: true } : {}),
    });
  } else if (v.storage !== "local") {
    throw new TabbifyError("USAGE", `--storage must be local or s3, got "${v.storage}"`);
  }

  const registry = await startRegistry({
    host,
    port,
    dataDir,
    service: v.service!,
    log,
    ...(driver ? { driver } : {}),
    ...(v["auth-url"] ? { authUrl: v["auth-url"] } : {}),
    ...(v["upstream-url"] ? { upstreamUrl: v["upstream-url"] } : {}),
    ...(v["upstream-cmd"] ? { upstreamCmd: v["upstream-cmd"] } : {}),
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
  return 0;
}
