/**
 * The artifact store's flags and env twins, shared by `tcli push` (which writes the store) and
 * `tabbify supervisor` (which reads it), so both name and default them the same way.
 */
import { type ArtifactStoreConfig, DEFAULT_LOCAL_STORE } from "../artifacts/open.js";
import type { OptionSpec } from "./flags.js";

export const artifactStoreOptions: OptionSpec[] = [
  {
    flag: "store",
    env: "TABBIFY_STORE",
    help: "artifact store: local or s3 (default: s3 when a bucket is set, else local)",
  },
  {
    flag: "store-dir",
    env: "TABBIFY_STORE_DIR",
    default: DEFAULT_LOCAL_STORE,
    help: "local store directory (same layout as the bucket)",
  },
  { flag: "bucket", env: "TABBIFY_BUCKET", help: "S3 bucket of the artifact store" },
  { flag: "region", env: "AWS_REGION", help: "S3 region" },
  {
    flag: "endpoint",
    env: "TABBIFY_S3_ENDPOINT",
    help: "S3-compatible endpoint URL (path-style), e.g. MinIO",
  },
];

/** The store options as parsed by `parseOptions` (flags over env over defaults). */
export function artifactStoreConfig(values: Record<string, string | undefined>): ArtifactStoreConfig {
  const config: ArtifactStoreConfig = {};
  if (values.store) config.kind = values.store;
  if (values["store-dir"]) config.dir = values["store-dir"];
  if (values.bucket) config.bucket = values.bucket;
  if (values.region) config.region = values.region;
  if (values.endpoint) config.endpoint = values.endpoint;
  return config;
}
