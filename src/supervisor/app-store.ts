import { chmod, readdir, readFile, rm, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { type AppManifest, parseManifest } from "../artifacts/manifest.js";
import { type ArtifactStore, IMAGE_FILE, MANIFEST_FILE } from "../artifacts/store.js";
import { isErrno, isTabbifyError, TabbifyError } from "../core/errors.js";
import type { WorkloadSpec } from "../runtimes/runtime.js";

/**
 * Apps published with `tcli push`, as this supervisor sees them: the newest version in the
 * artifact store, fetched into a local cache and turned into a WorkloadSpec.
 *
 *   <data>/apps/<uuid>/v<N>/   one complete version (downloadVersion renames it into place whole,
 *                              so a directory that exists is complete and is reused as is)
 *
 * Errors keep the supervisor API's contract: no such app in the store is APP_NOT_FOUND (404,
 * `{uuid, present:false}`), a store that fails (unreachable, denied, no bucket) is
 * ARTIFACT_STORE_FAILED (502), and a manifest the supervisor cannot run is MANIFEST_INVALID (422).
 */

/** What a stored version needs to run, ready for a runner. */
export interface FetchedApp {
  version: number;
  /** `v<N>`, as recorded and reported. */
  label: string;
  manifest: AppManifest;
  spec: WorkloadSpec;
  cacheDir: string;
}

/** The docker image tag `tcli push` builds and ships for a version (SEED-FACTS §3). */
export function shippedImageTag(uuid: string, version: number): string {
  return `tbf-img-${uuid}-v${version}`;
}

export function versionLabel(version: number): string {
  return `v${version}`;
}

export class AppStore {
  constructor(
    readonly store: ArtifactStore,
    /** `<data>/apps`. */
    readonly cacheRoot: string,
  ) {}

  /** The newest complete version; APP_NOT_FOUND when the store has none. */
  async latest(uuid: string): Promise<number> {
    const version = await this.guard(uuid, () => this.store.latestVersion(uuid));
    if (version === null) {
      throw new TabbifyError("APP_NOT_FOUND", `the artifact store has no app ${uuid}`, {
        uuid,
        present: false,
      });
    }
    return version;
  }

  /** The newest version, or null when the store has none (store failures still throw). */
  async latestOrNull(uuid: string): Promise<number | null> {
    return this.guard(uuid, () => this.store.latestVersion(uuid));
  }

  cacheDir(uuid: string, version: number): string {
    return join(this.cacheRoot, uuid, versionLabel(version));
  }

  /**
   * Makes version N runnable here: a complete cached copy is reused (versions never change once
   * published), otherwise the manifest is read and what its runtime needs is downloaded.
   */
  async fetch(uuid: string, version: number): Promise<FetchedApp> {
    const cacheDir = this.cacheDir(uuid, version);
    const manifest =
      (await this.cachedManifest(cacheDir, uuid, version)) ?? (await this.download(uuid, version, cacheDir));
    const spec = await specFromManifest(uuid, version, manifest, cacheDir);
    return { version, label: versionLabel(version), manifest, spec, cacheDir };
  }

  private async download(uuid: string, version: number, cacheDir: string): Promise<AppManifest> {
    const { manifest } = await this.guard(uuid, () => this.store.readManifest(uuid, version));
    const needed = neededFiles(manifest);
    try {
      await this.guard(uuid, () =>
        this.store.downloadVersion(uuid, version, cacheDir, {
          include: (path) => needed === "all" || needed.has(path),
        }),
      );
    } catch (err) {
      // A concurrent fetch of the same version may have renamed its copy into place first.
      if (!(await this.cachedManifest(cacheDir, uuid, version))) throw err;
    }
    return manifest;
  }

  /** Removes cached versions of an app other than `keep`. */
  async prune(uuid: string, keep: ReadonlySet<number>): Promise<void> {
    const dir = join(this.cacheRoot, uuid);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const m = /^v([1-9]\d*)$/.exec(name);
      if (m && !keep.has(Number(m[1]))) await rm(join(dir, name), { recursive: true, force: true });
    }
  }

  /** Forgets every cached version of an app. */
  async purge(uuid: string): Promise<void> {
    await rm(join(this.cacheRoot, uuid), { recursive: true, force: true });
  }

  private async cachedManifest(cacheDir: string, uuid: string, version: number): Promise<AppManifest | null> {
    let source: string;
    try {
      source = await readFile(join(cacheDir, MANIFEST_FILE), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return null;
      throw err;
    }
    return parseStoredManifest(source, uuid, version);
  }

  /** Store calls with their failures sorted into the API's three answers. */
  private async guard<T>(uuid: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (isTabbifyError(err, "MANIFEST_INVALID")) throw err;
      if (isTabbifyError(err, "ARTIFACT_NOT_FOUND")) {
        throw new TabbifyError("APP_NOT_FOUND", err.message, { uuid, present: false });
      }
      const why = err instanceof Error ? err.message : String(err);
      throw new TabbifyError("ARTIFACT_STORE_FAILED", `the artifact store failed for app ${uuid}: ${why}`, {
        uuid,
        ...(isTabbifyError(err) ? { store_code: err.code } : {}),
      });
    }
  }
}

function parseStoredManifest(source: string, uuid: string, version: number): AppManifest {
  return parseManifest(source, `apps/${uuid}/${versionLabel(version)}/${MANIFEST_FILE}`);
}

/** The files a runtime reads: a wasm app its entry, a shipped image its archive, a process all. */
function neededFiles(manifest: AppManifest): Set<string> | "all" {
  const { runtime, build } = manifest;
  if (runtime.type === "wasm") return new Set([MANIFEST_FILE, runtime.entry!]);
  if (runtime.type === "docker") {
    return new Set(build?.kind === "docker" ? [MANIFEST_FILE, IMAGE_FILE] : [MANIFEST_FILE]);
  }
  return "all";
}

function unrunnable(uuid: string, version: number, what: string): TabbifyError {
  return new TabbifyError(
    "MANIFEST_INVALID",
    `apps/${uuid}/${versionLabel(version)}/${MANIFEST_FILE}: ${what}`,
    {
      uuid,
      version: versionLabel(version),
    },
  );
}

/** The WorkloadSpec a stored version runs as; MANIFEST_INVALID when this host cannot honour it. */
export async function specFromManifest(
  uuid: string,
  version: number,
  manifest: AppManifest,
  cacheDir: string,
): Promise<WorkloadSpec> {
  const { runtime } = manifest;
  if (runtime.port !== undefined) {
    // Every runtime here hands the app its port in PORT and forwards the app address to it.
    throw unrunnable(
      uuid,
      version,
      `[runtime] port = ${runtime.port} is not supported: the app must listen on the PORT it is given`,
    );
  }
  const env = { ...manifest.env };
  const withEnv = (spec: WorkloadSpec): WorkloadSpec => ({
    ...spec,
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...manifestBehaviour(manifest),
  });
  const vcpus = runtime.vcpus === undefined ? {} : { vcpus: runtime.vcpus };
  switch (runtime.type) {
    case "process": {
      const command = runtime.command!;
      await makeProgramExecutable(cacheDir, command[0]!);
      return withEnv({
        runtime: "process",
        artifactDir: cacheDir,
        command,
        limits: { memoryMb: runtime.memoryMb, ...vcpus },
      });
    }
    case "wasm":
      return withEnv({
        runtime: "wasm",
        artifactDir: cacheDir,
        entry: runtime.entry!,
        limits: { memoryMb: runtime.memoryMb, timeoutMs: fuelToCpuMs(runtime.fuelPerRequest), ...vcpus },
      });
    case "docker": {
      const limits = { memoryMb: runtime.memoryMb, ...vcpus };
      if (manifest.build?.kind === "docker") {
        return withEnv({
          runtime: "docker",
          image: shippedImageTag(uuid, version),
          imageArchive: join(cacheDir, IMAGE_FILE),
          limits,
        });
      }
      if (runtime.registryRef) return withEnv({ runtime: "docker", image: runtime.registryRef, limits });
      throw unrunnable(
        uuid,
        version,
        '[runtime] type = "docker" needs [build] kind = "docker" or registry_ref',
      );
    }
  }
}

/**
 * The store keeps no file modes, so a program shipped with the app (`./server`, `bin/app`) comes
 * back without its execute bit. Commands found on PATH (`node`) are left alone.
 */
async function makeProgramExecutable(cacheDir: string, program: string): Promise<void> {
  if (!program.includes("/") || program.startsWith("/")) return;
  const path = resolve(cacheDir, program);
  if (!path.startsWith(resolve(cacheDir) + sep)) return;
  const info = await stat(path).catch(() => undefined);
  if (info?.isFile()) await chmod(path, info.mode | 0o755);
}

/**
 * `fuel_per_request` as a CPU-time budget: node:wasi has no instruction metering, so one unit of
 * fuel (about one wasm instruction in wasmtime) counts as a nanosecond; the seed's default of
 * 10^9 is one second. A request over it is stopped with 504 and logged with reason `fuel`.
 */
export function fuelToCpuMs(fuel: number): number {
  return Math.max(1, Math.round(fuel / 1_000_000));
}

/** What the manifest says about the app's life besides its runtime: lifecycle and data. */
function manifestBehaviour(manifest: AppManifest): Partial<WorkloadSpec> {
  const { runtime, lifecycle } = manifest;
  const out: Partial<WorkloadSpec> = {
    lifecycle: { mode: lifecycle.mode, idleTimeoutSec: lifecycle.idleTimeoutSec },
  };
  if (runtime.stateful) {
    out.stateful = true;
    if (runtime.dataMount !== undefined) out.dataMount = runtime.dataMount;
  }
  return out;
}
