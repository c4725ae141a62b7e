/**
 * The `docker run` every Tabbify container gets, whether a workload (docker.ts) or a release's
 * one-shot migration (src/supervisor/migrate.ts): the app's user (never the image's root), no
 * capabilities and no way to gain any, the app's network, its limits, data and release manifest,
 * and its env through a 0600 file rather than argv (any local user reads argv in ps).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CONTAINER_RELEASE_MANIFEST,
  DEFAULT_DATA_MOUNT,
  type WorkloadSpec,
  type WorkloadUser,
} from "./runtime.js";

/** Who a container runs as when the runner names no app user: nobody, never the image's root. */
export const DEFAULT_CONTAINER_USER = "65534:65534";

/** `--user` for a workload: the app's uid and group, else nobody. */
export function containerUser(user: WorkloadUser | undefined): string {
  return user ? `${user.uid}:${user.gid}` : DEFAULT_CONTAINER_USER;
}

/**
 * What every container runs with besides its user: no capabilities at all, no way to gain any
 * (setuid binaries included), and a private /tmp, since an image's root-owned filesystem is not
 * writable by the unprivileged user.
 */
export const containerHardening = [
  "--cap-drop",
  "ALL",
  "--security-opt",
  "no-new-privileges",
  "--tmpfs",
  "/tmp:rw,nosuid,nodev,mode=1777",
];

export function dataMountOf(spec: WorkloadSpec): string {
  return spec.dataMount ?? DEFAULT_DATA_MOUNT;
}

/**
 * The env file's contents: spec.env, where a stateful app's data is, the release manifest's path,
 * then HOST and PORT for a workload that serves (a migration serves nothing and gets neither).
 */
export function containerEnv(spec: WorkloadSpec, port?: number): Record<string, string> {
  return {
    ...spec.env,
    ...(spec.dataDir ? { TABBIFY_DATA_DIR: dataMountOf(spec) } : {}),
    ...(spec.releaseManifest ? { TABBIFY_RELEASE_MANIFEST: CONTAINER_RELEASE_MANIFEST } : {}),
    ...(port === undefined ? {} : { HOST: "127.0.0.1", PORT: String(port) }),
  };
}

/**
 * The flags of `docker run` between the mode (`-d`, or none for a one-shot) and the image. The
 * network is the host's, as every docker workload has it: the app binds 127.0.0.1:PORT, and its
 * migration reaches what the app reaches, nothing more.
 */
export function hardenedRunArgs(
  spec: WorkloadSpec,
  opts: { name: string; envFile: string; user: WorkloadUser | undefined; labels: Record<string, string> },
): string[] {
  const args = ["--network", "host", "--name", opts.name, "--env-file", opts.envFile];
  args.push("--user", containerUser(opts.user), ...containerHardening);
  for (const [key, value] of Object.entries(opts.labels)) args.push("--label", `${key}=${value}`);
  if (spec.releaseManifest) {
    args.push(
      "--mount",
      `type=bind,source=${spec.releaseManifest},target=${CONTAINER_RELEASE_MANIFEST},readonly`,
    );
  }
  if (spec.limits?.memoryMb) args.push("--memory", `${Math.floor(spec.limits.memoryMb)}m`);
  if (spec.limits?.vcpus) args.push("--cpus", String(spec.limits.vcpus));
  if (spec.dataDir) args.push("--mount", `type=bind,source=${spec.dataDir},target=${dataMountOf(spec)}`);
  return args;
}

/** Runs `use` with `env` written to a 0600 file (NAME=value lines), removed once it settles. */
export async function withEnvFile<T>(
  env: Record<string, string>,
  use: (file: string) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "tabbify-docker-env-"));
  const file = join(dir, "env");
  try {
    await writeFile(
      file,
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
      { mode: 0o600 },
    );
    return await use(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
