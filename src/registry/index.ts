import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { AuthClient } from "../auth/client.js";
import { RegistryTokens } from "../auth/registry-token.js";
import { TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import type { StorageDriver } from "../storage/driver.js";
import { LocalDriver, privateDirMode } from "../storage/local.js";
import { dataDirPermissionWarnings } from "../storage/permissions.js";
import { listenOptions } from "../upgrade/listener-handoff.js";
import { AuthGate } from "./auth-gate.js";
import { collectWithRules, type GcRules, GcSchedule } from "./gc-schedule.js";
import { buildRegistryApp } from "./http.js";
import { Notifier, type NotifyEndpoint } from "./notifications.js";
import { RegistryService } from "./repository.js";
import { UpstreamChild, UpstreamProxy } from "./upstream.js";

export { AuthGate } from "./auth-gate.js";
export { buildRegistryApp } from "./http.js";
export { RegistryService } from "./repository.js";

export interface StartRegistryOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Where the local driver keeps data (and, with another driver, where uploads are staged). */
  dataDir?: string;
  /** Defaults to a LocalDriver on `dataDir`. */
  driver?: StorageDriver;
  /** Upload staging dir; defaults to `<LocalDriver.tmpDir>/uploads`, else `<dataDir>/staging`. */
  stagingDir?: string;
  /** Auth service base URL; unset means anonymous dev mode. */
  authUrl?: string;
  /** Service name in challenges and tokens. */
  service?: string;
  /** Supplied instead of `authUrl` by tests that bring their own token issuer. */
  tokens?: RegistryTokens;
  upstreamUrl?: string;
  upstreamCmd?: string;
  staleUploadMs?: number;
  /** Open upload sessions one tenant may hold (429 TOOMANYREQUESTS past it). Default 100. */
  maxUploadsPerTenant?: number;
  /** How often stale uploads are swept. Default 10 minutes. */
  cleanupIntervalMs?: number;
  /** `repo:tag` globs whose tags keep their first digest (409 TAG_IMMUTABLE otherwise). */
  immutableTags?: readonly string[];
  /** `--notify`: endpoints that get Distribution-format push/delete events from a durable queue. */
  notify?: readonly NotifyEndpoint[];
  /** Retry backoff bounds for notifications. Default 500 ms .. 30 s. */
  notifyBackoffMs?: { min: number; max: number };
  /** `--gc-interval`: garbage collection under `rules` every `intervalMs` (absent: never). */
  gc?: { intervalMs: number; rules: GcRules };
  log?: Logger;
}

export interface RunningRegistry {
  url: string;
  /** Present with `--notify`: the undelivered backlog per endpoint. */
  notifier?: Notifier;
  /** Present with `--gc-interval`: runs so far and the last report. */
  gc?: GcSchedule;
  mode: "auth" | "anonymous";
  service: RegistryService;
  close(): Promise<void>;
}

export const defaultServiceName = "tabbify-registry";

/**
 * Where upload sessions are staged when not told: inside the local driver's tmpDir (same device,
 * so `ingest` is a rename), else `<dataDir>/staging`. `tabbify registry gc` finds the registry's
 * sessions through this same rule.
 */
export function defaultStagingDir(driver: StorageDriver, dataDir: string | undefined): string {
  if (driver instanceof LocalDriver) return join(driver.tmpDir, "uploads");
  if (dataDir) return join(dataDir, "staging");
  throw new TabbifyError("CONFIG_INVALID", "the registry needs a staging dir for this storage driver");
}

/** Starts a registry in this process: the composition roots, `tabbify up` and tests call it. */
export async function startRegistry(opts: StartRegistryOptions): Promise<RunningRegistry> {
  const log = opts.log ?? silentLogger;
  let driver = opts.driver;
  if (!driver) {
    if (!opts.dataDir) throw new TabbifyError("CONFIG_INVALID", "the registry needs a data dir or a driver");
    driver = new LocalDriver(opts.dataDir);
  }
  if (opts.dataDir) {
    // Checked before anything is created: a dir made now is 0700, one found 0755 is reported.
    for (const warning of await dataDirPermissionWarnings(opts.dataDir)) log.warn(warning);
    await mkdir(opts.dataDir, { recursive: true, mode: privateDirMode });
  }
  const stagingDir = opts.stagingDir ?? defaultStagingDir(driver, opts.dataDir);
  await mkdir(stagingDir, { recursive: true, mode: privateDirMode });
  const service = new RegistryService({
    driver,
    stagingDir,
    ...(opts.staleUploadMs !== undefined ? { staleUploadMs: opts.staleUploadMs } : {}),
    ...(opts.maxUploadsPerTenant !== undefined ? { maxUploadsPerTenant: opts.maxUploadsPerTenant } : {}),
    ...(opts.immutableTags ? { immutableTags: opts.immutableTags } : {}),
  });
  const serviceName = opts.service ?? defaultServiceName;
  const gate = opts.authUrl
    ? new AuthGate(new AuthClient(opts.authUrl), opts.tokens ?? new RegistryTokens(), serviceName)
    : undefined;

  if (opts.upstreamUrl && (opts.notify?.length ?? 0) > 0) {
    throw new TabbifyError("CONFIG_INVALID", "--notify is sent by our own storage, not in wrapper mode");
  }
  let notifier: Notifier | undefined;
  if ((opts.notify?.length ?? 0) > 0) {
    if (!opts.dataDir) throw new TabbifyError("CONFIG_INVALID", "--notify keeps its queue in the data dir");
    notifier = await Notifier.open({
      dir: join(opts.dataDir, "notifications"),
      endpoints: opts.notify!,
      log,
      ...(opts.notifyBackoffMs
        ? { minBackoffMs: opts.notifyBackoffMs.min, maxBackoffMs: opts.notifyBackoffMs.max }
        : {}),
    });
  }

  let child: UpstreamChild | undefined;
  let upstream: UpstreamProxy | undefined;
  if (opts.upstreamUrl && (opts.immutableTags?.length ?? 0) > 0) {
    throw new TabbifyError(
      "CONFIG_INVALID",
      "--immutable-tags is enforced by our own storage, not in wrapper mode",
    );
  }
  if (opts.gc && opts.upstreamUrl) {
    throw new TabbifyError("CONFIG_INVALID", "--gc-interval collects our own storage, not in wrapper mode");
  }
  const gcDataDir = opts.dataDir;
  if (opts.gc?.rules.keepReleasesFrom && !gcDataDir) {
    throw new TabbifyError("CONFIG_INVALID", "--keep-releases-from keeps its candidates in the data dir");
  }
  if (opts.upstreamUrl) {
    upstream = new UpstreamProxy(opts.upstreamUrl);
    if (opts.upstreamCmd) {
      child = new UpstreamChild({ command: opts.upstreamCmd, url: opts.upstreamUrl, log });
      await child.start();
    }
  } else if (opts.upstreamCmd) {
    throw new TabbifyError("CONFIG_INVALID", "--upstream-cmd needs --upstream-url (where the child listens)");
  }

  await service
    .cleanupStaleUploads()
    .catch((err: unknown) => log.warn("stale upload sweep failed", { error: String(err) }));
  const sweep = setInterval(
    () => {
      service
        .cleanupStaleUploads()
        .catch((err: unknown) => log.warn("stale upload sweep failed", { error: String(err) }));
    },
    opts.cleanupIntervalMs ?? 10 * 60 * 1000,
  );
  sweep.unref();

  const gc = opts.gc
    ? new GcSchedule({
        intervalMs: opts.gc.intervalMs,
        run: (signal) => collectWithRules(service, gcDataDir ?? "", opts.gc!.rules, { signal }),
        log: log.child("gc"),
      })
    : undefined;

  const app = buildRegistryApp({
    service,
    log,
    ...(gate ? { gate } : {}),
    ...(upstream ? { upstream } : {}),
    ...(notifier ? { notifier } : {}),
  });
  try {
    await app.listen(listenOptions({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 0 }));
  } catch (err) {
    clearInterval(sweep);
    await child?.stop();
    await notifier?.close();
    throw err;
  }
  gc?.start();
  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    mode: gate ? "auth" : "anonymous",
    service,
    ...(notifier ? { notifier } : {}),
    ...(gc ? { gc } : {}),
    async close() {
      clearInterval(sweep);
      await gc?.close();
      // A client mid-transfer (or holding a keep-alive socket) must not keep a stopping
      // registry alive: give in-flight requests a moment, then cut what is left.
      const cut = setTimeout(() => app.server.closeAllConnections(), 3000);
      cut.unref();
      await app.close();
      clearTimeout(cut);
      upstream?.close();
      await child?.stop();
      await notifier?.close();
    },
  };
}
