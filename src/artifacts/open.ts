import { TabbifyError } from "../core/errors.js";
import { LocalDriver } from "../storage/local.js";
import { ArtifactStore } from "./store.js";

/**
 * Builds the artifact store from the options every user of it shares (`tcli push` writes it,
 * `tabbify supervisor` reads it): a local directory, or an S3 bucket reached with the AWS
 * default credential chain. The callers read flags and env; this only turns values into a store.
 */

/** The embedded default of `tabbify up`, relative to the working directory. */
export const DEFAULT_LOCAL_STORE = "./.tabbify/artifacts";

export interface ArtifactStoreConfig {
  /** "local" or "s3"; unset means s3 when a bucket is named, else local. */
  kind?: string;
  /** Root of the local store. */
  dir?: string;
  bucket?: string;
  region?: string;
  /** An S3-compatible endpoint (path-style URLs). */
  endpoint?: string;
}

export interface OpenedArtifactStore {
  store: ArtifactStore;
  kind: "local" | "s3";
  /** For people: `local:/abs/dir` or `s3://bucket[ at endpoint]`. Never holds credentials. */
  name: string;
  /** The local store's root, which must never be uploaded from inside an app directory. */
  localRoot?: string;
  /** Where to stage large files so publishing them is a rename (local store only). */
  stagingDir?: string;
  /** Releases the S3 client's sockets; a no-op for the local store. */
  close(): void;
}

export async function openArtifactStore(config: ArtifactStoreConfig): Promise<OpenedArtifactStore> {
  const kind = config.kind ?? (config.bucket ? "s3" : "local");
  if (kind === "local") {
    const driver = new LocalDriver(config.dir ?? DEFAULT_LOCAL_STORE);
    return {
      store: new ArtifactStore(driver, { stagingDir: driver.tmpDir }),
      kind,
      name: `local:${driver.root}`,
      localRoot: driver.root,
      stagingDir: driver.tmpDir,
      close: () => {},
    };
  }
  if (kind === "s3") {
    if (!config.bucket) throw new TabbifyError("USAGE", "--store s3 needs --bucket (or TABBIFY_BUCKET)");
    const { S3Driver } = await import("../storage/s3.js");
    const driver = new S3Driver({
      bucket: config.bucket,
      ...(config.region ? { region: config.region } : {}),
      ...(config.endpoint ? { endpoint: config.endpoint, forcePathStyle: true } : {}),
    });
    return {
      store: new ArtifactStore(driver),
      kind,
      name: `s3://${config.bucket}${config.endpoint ? ` at ${config.endpoint}` : ""}`,
      close: () => driver.close(),
    };
  }
  throw new TabbifyError("USAGE", `--store must be local or s3, got "${kind}"`);
}
