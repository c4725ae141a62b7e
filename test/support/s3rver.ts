/**
 * A real S3-compatible server for tests: `s3rver` (a devDependency) in its own process, on a free
 * port on 127.0.0.1, storing under a fresh temp directory, with the named buckets created. It
 * runs through s3rver-server.js, which fixes s3rver's non-atomic writes and broken delimiter
 * listing (see there).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type RunningProcess, repoRoot, spawnProcess, tempDir } from "./tools.js";

/** s3rver's built-in account: it checks signatures made with these keys (and accepts unsigned requests). */
export const S3RVER_ACCESS_KEY_ID = "S3RVER";
export const S3RVER_SECRET_ACCESS_KEY = "S3RVER";

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>`; use with `forcePathStyle: true`. */
  endpoint: string;
  process: RunningProcess;
  /** Env that points the AWS SDK's default credential chain at s3rver's account. */
  credentialsEnv: Record<string, string>;
  stop(): Promise<void>;
}

export async function startS3rver(buckets: string[]): Promise<S3rverHandle> {
  if (!existsSync(join(repoRoot, "node_modules", "s3rver"))) {
    throw new Error("s3rver is not installed: run `npm ci`");
  }
  const launcher = fileURLToPath(new URL("./s3rver-server.js", import.meta.url));
  const dir = await tempDir("tabbify-s3rver");
  // s3rver encrypts continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
  const args = ["--openssl-legacy-provider", launcher, "--directory", join(dir.path, "data")];
  for (const b of buckets) args.push("--bucket", b);
  // Port 0 lets the kernel pick; s3rver prints the port it got, so there is no race for it.
  const proc = spawnProcess(process.execPath, args);
  let port: string;
  try {
    const m = await proc.waitForLine(/S3rver listening on [\d.]+:(\d+)/, 20_000);
    port = m[1]!;
  } catch (err) {
    await proc.stop();
    await dir.remove();
    throw err;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    process: proc,
    credentialsEnv: {
      AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY,
      AWS_REGION: "us-east-1",
    },
    async stop() {
      await proc.stop();
      await dir.remove();
    },
  };
}
