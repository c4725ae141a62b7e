/**
 * `tabbify supervisor`: runner lifecycle on this host. Reads flags/env, checks what the host can
 * do, re-adopts living runners, serves the HTTP API and keeps this host on the node's roster.
 */

import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { v7 as uuidV7 } from "uuid";
import { openArtifactStore } from "../artifacts/open.js";
import { type MeshMode, parseAppUuid } from "../core/address.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import { createLogger, type Logger } from "../core/log.js";
import type { RosterClient } from "../mesh/client.js";
import type { MeshJoiner } from "../mesh/joiner.js";
import type { PeerRecord } from "../mesh/roster.js";
import type { RuntimeKind } from "../runtimes/runtime.js";
import { buildApi } from "../supervisor/api.js";
import { AppStore } from "../supervisor/app-store.js";
import { AppUsers, ensureAppUser } from "../supervisor/app-users.js";
import { defaultBackoff } from "../supervisor/backoff.js";
import { capabilityTags, hasNetAdmin, InterfaceAddresses, noAddresses } from "../supervisor/host.js";
import { SecretEnvSource } from "../supervisor/secret-env.js";
import { Supervisor } from "../supervisor/supervisor.js";
import { listenOptions } from "../upgrade/listener-handoff.js";
import { registerSupervisorHandoff } from "../upgrade/supervisor-handoff.js";
import { artifactStoreConfig, artifactStoreOptions } from "./artifact-store-options.js";
import { warnIfPublic } from "./bind-warning.js";
import { registerHandlerPull } from "./deploy-handler-pull.js";
import { registerDeployPull } from "./deploy-pull.js";
import { registerDeployRelease } from "./deploy-release.js";
import { egressKernelFor, egressKernelOption } from "./egress-kernel-option.js";
import {
  allowPrivateReposOption,
  intOption,
  type OptionSpec,
  optionsHelp,
  parseListen,
  parseOptions,
  required,
  untilSignal,
} from "./flags.js";
import { kernelHopFor, kernelHopOption } from "./kernel-hop-option.js";
import { applyLogOptions, logArgs, logOptions } from "./log-options.js";
import { announcing, joinMesh, meshJoinOptions } from "./mesh-join.js";
import { supervisorApiKey } from "./supervisor-key.js";

const DEFAULT_APP_USER = "tabbify-app";

export const specs: OptionSpec[] = [
  { flag: "name", env: "SUPERVISOR_NAME", default: "tabbify-supervisor", help: "display name on the roster" },
  { flag: "data", env: "SUPERVISOR_DATA_DIR", help: "data directory (runner records, logs, sockets)" },
  { flag: "listen", env: "SUPERVISOR_LISTEN", default: "127.0.0.1:8730", help: "HTTP API address" },
  { flag: "node", env: "TABBIFY_NODE_URL", help: "node URL to register with (roster)" },
  {
    flag: "api-key-file",
    env: "SUPERVISOR_API_KEY_FILE",
    help: "file holding the API key callers send as Bearer (default <data>/api.key, created 0600; env SUPERVISOR_API_KEY wins)",
  },
  {
    flag: "mesh",
    env: "SUPERVISOR_MESH",
    default: "local",
    help: "local (loopback twins), ula (real ULAs on lo) or wireguard (join the mesh: ula, plus a WireGuard interface; the API binds on the peer ULA)",
  },
  ...meshJoinOptions,
  {
    flag: "builder",
    env: "SUPERVISOR_BUILDER",
    boolean: true,
    help: "build images: advertise the builder tag while the docker daemon answers",
  },
  {
    flag: "capability-refresh-ms",
    env: "SUPERVISOR_CAPABILITY_REFRESH_MS",
    default: "30000",
    help: "how often the runtimes this host can run (docker's daemon answering) are asked again; the roster tags follow",
  },
  allowPrivateReposOption,
  {
    flag: "app",
    env: "SUPERVISOR_APPS",
    multiple: true,
    help: "app uuid to fetch from the artifact store and keep running (repeatable; env comma-separated)",
  },
  ...artifactStoreOptions,
  {
    flag: "reconcile-interval-ms",
    env: "SUPERVISOR_RECONCILE_INTERVAL_MS",
    default: "5000",
    help: "how often runner records are reconciled",
  },
  {
    flag: "restart-base-ms",
    env: "SUPERVISOR_RESTART_BASE_MS",
    default: String(defaultBackoff.baseMs),
    help: "first respawn delay for a dead runner (doubles per failure)",
  },
  {
    flag: "restart-cap-ms",
    env: "SUPERVISOR_RESTART_CAP_MS",
    default: String(defaultBackoff.capMs),
    help: "longest respawn delay",
  },
  {
    flag: "runner-restart-base-ms",
    env: "SUPERVISOR_RUNNER_RESTART_BASE_MS",
    default: "1000",
    help: "first delay before a runner restarts its crashed workload",
  },
  {
    flag: "warm-spares",
    env: "SUPERVISOR_WARM_SPARES",
    default: "1",
    help: "runners kept booted ahead for the next start (0: spawn each runner on demand)",
  },
  {
    flag: "app-user",
    env: "SUPERVISOR_APP_USER",
    default: DEFAULT_APP_USER,
    help: "as root: the account whose group every workload runs with; each app also gets a uid of its own (the default account is created if missing, else nobody is used)",
  },
  {
    flag: "runner-health-timeout-ms",
    env: "SUPERVISOR_RUNNER_HEALTH_TIMEOUT_MS",
    default: "25000",
    help: "how long a runner waits for a new workload to answer (start, restart, swap)",
  },
  kernelHopOption,
  egressKernelOption,
  ...logOptions,
];

/** The package root of the tree this supervisor runs from (dist/src/main → three levels up). */
const treeRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

async function packageVersion(): Promise<string> {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(await readFile(url, "utf8")) as { version: string }).version;
}

/** A sticky id for this supervisor, kept in its data dir. */
async function supervisorId(dataDir: string): Promise<string> {
  const path = join(dataDir, "supervisor-id");
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
  const id = uuidV7();
  await writeFile(path, `${id}\n`, { mode: 0o600 });
  return id;
}

/**
 * As root: every app's workloads run as a uid of their own with `--app-user`'s group, in their own
 * directory under the data dir, which becomes traversable (0711) while everything else in it
 * stays 0700/0600. Not root: nothing to switch to, and workloads run as the supervisor's user.
 */
async function appUsersFor(
  dataDir: string,
  name: string,
  logger: ReturnType<typeof createLogger>,
): Promise<AppUsers | undefined> {
  if (process.getuid?.() !== 0) {
    logger.warn("not running as root: process and wasm workloads run as the supervisor's own user", {
      user: process.getuid?.(),
    });
    return undefined;
  }
  const { user, why } = await ensureAppUser(name, name === DEFAULT_APP_USER).catch((err: Error) => {
    throw new TabbifyError("USAGE", err.message);
  });
  if (why && user.name !== name) logger.warn("app user", { why });
  else if (why) logger.info("app user", { why });
  // Everything the supervisor keeps beside the workloads' directories stays root's alone.
  for (const dir of ["runners", "apps", "builds"]) {
    await mkdir(join(dataDir, dir), { recursive: true, mode: 0o700 });
    await chmod(join(dataDir, dir), 0o700);
  }
  const users = new AppUsers({ root: join(dataDir, "workloads"), gid: user.gid });
  const opened = await users.init(dataDir);
  if (opened.length > 0)
    logger.warn("made directories above the data dir traversable (o+x) for the app users", { opened });
  logger.info("workloads run as a uid of their own per app", { group: user.name, gid: user.gid });
  return users;
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const startedAt = Date.now();
  const opts = parseOptions(argv, env, specs);
  if (opts.help) {
    process.stdout.write(
      optionsHelp(
        "tabbify supervisor --data DIR [--listen ADDR] [--node URL] [--mesh local|ula] [--app UUID]... [--store local|s3 ...]",
        specs,
      ),
    );
    return 0;
  }
  const dataDir = required(opts.values.data, "--data");
  let listen = parseListen(opts.values.listen!);
  const wireguard = opts.values.mesh === "wireguard";
  // In the mesh, apps bind their real ULAs; the tunnel carries them between hosts.
  const mesh = (wireguard ? "ula" : opts.values.mesh) as MeshMode;
  if (mesh !== "local" && mesh !== "ula")
    throw new TabbifyError("USAGE", `--mesh wants local, ula or wireguard, got "${mesh}"`);
  if (mesh === "ula" && !(await hasNetAdmin())) {
    throw new TabbifyError(
      "NET_ADMIN_REQUIRED",
      "--mesh ula adds app addresses to lo and needs CAP_NET_ADMIN, which this process lacks; run as root, grant the capability, or use --mesh local",
    );
  }
  // Checked before anything starts: a typo in --app is a usage error, not a retry loop.
  const pinnedApps = [...new Set((opts.lists.app ?? []).map((a) => parseAppUuid(a.trim())))];
  const logging = applyLogOptions(opts.values);
  const logger = createLogger(`supervisor ${opts.values.name}`);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const apiKey = await supervisorApiKey(dataDir, opts.values["api-key-file"], env, logger);
  const appUsers = await appUsersFor(resolve(dataDir), opts.values["app-user"]!, logger);
  const egressKernel = await egressKernelFor(opts.values["egress-kernel"], appUsers !== undefined);
  const artifacts = await openArtifactStore(artifactStoreConfig(opts.values));
  const { runtimeFor, availableRuntimeKinds } = await import("../runtimes/index.js");
  const version = await packageVersion();
  // Asking docker costs ~100 ms, so what the host can run is cached briefly; tags follow it.
  let kinds = await availableRuntimeKinds();
  let kindsAt = Date.now();
  const refreshMs = intOption(opts.values["capability-refresh-ms"], "capability-refresh-ms");
  const availableKinds = async (): Promise<RuntimeKind[]> => {
    if (Date.now() - kindsAt > Math.min(10_000, refreshMs)) {
      kinds = await availableRuntimeKinds();
      kindsAt = Date.now();
    }
    return kinds;
  };
  const builder = opts.flags.builder === true;
  // A docker daemon that starts (or stops) after the supervisor shows in its tags within this.
  const refreshKinds = setInterval(() => {
    availableKinds().catch(() => {});
  }, refreshMs);
  refreshKinds.unref();

  const runnerHealthTimeoutMs = intOption(
    opts.values["runner-health-timeout-ms"],
    "runner-health-timeout-ms",
  );
  // The roster takes the node key, or in the mesh the host's supervisor-tagged join token.
  const kernelHop = await kernelHopFor(opts.values["kernel-hop"], dataDir, logger, mesh);
  // Told whenever an app address comes or goes on this host (assigned once the mesh is joined).
  let meshJoiner: MeshJoiner | undefined;
  const rosterKey =
    env.TABBIFY_NODE_KEY || (wireguard ? env.TABBIFY_MESH_JOIN_TOKEN : undefined) || undefined;
  const supervisor = new Supervisor({
    name: opts.values.name!,
    dataDir,
    mesh,
    runtimeFor,
    availableKinds,
    addresses:
      mesh === "ula"
        ? announcing(new InterfaceAddresses("lo"), () => meshJoiner?.hostedChanged())
        : noAddresses,
    logger,
    ...(opts.values.node ? { nodeUrl: opts.values.node } : {}),
    ...(rosterKey ? { nodeKey: rosterKey } : {}),
    ...(opts.values.node ? { secretEnv: secretEnvFrom(opts.values.node, apiKey, logger) } : {}),
    reconcileIntervalMs: intOption(opts.values["reconcile-interval-ms"], "reconcile-interval-ms"),
    backoff: {
      ...defaultBackoff,
      baseMs: intOption(opts.values["restart-base-ms"], "restart-base-ms"),
      capMs: intOption(opts.values["restart-cap-ms"], "restart-cap-ms"),
    },
    runnerArgs: [
      "--restart-base-ms",
      String(intOption(opts.values["runner-restart-base-ms"], "runner-restart-base-ms")),
      "--health-timeout-ms",
      String(runnerHealthTimeoutMs),
      ...(kernelHop ? ["--kernel-hop", kernelHop.table] : []),
      // Only when on, so runners of an earlier version (a rollback) still start.
      ...(egressKernel === "on" ? ["--egress-kernel", "on"] : []),
      ...logArgs(logging),
    ],
    // The runner's own health wait, plus time to spawn it and bind.
    startTimeoutMs: runnerHealthTimeoutMs + 5_000,
    apps: new AppStore(artifacts.store, join(resolve(dataDir), "apps")),
    warmSpares: intOption(opts.values["warm-spares"], "warm-spares", 0),
    ...(appUsers ? { appUsers } : {}),
    ...(kernelHop ? { kernelHop } : {}),
  });
  await supervisor.init();
  meshJoiner = wireguard
    ? await joinMesh({
        values: opts.values,
        env,
        dataDir,
        displayName: opts.values.name!,
        tags: capabilityTags(kinds, builder),
        logger,
      })
    : undefined;
  if (meshJoiner?.ula) listen = { host: meshJoiner.ula, port: listen.port };

  let roster: RosterClient | undefined;
  const api = await buildApi(
    supervisor,
    {
      supervisorId: await supervisorId(dataDir),
      ula: listen.host,
      version,
      tags: () => capabilityTags(kinds, builder),
      rosterPeerId: () => roster?.joinedPeerId,
      startedAt,
    },
    { apiKey },
  );
  registerHandlerPull(api, dataDir, logger.child("deploy"));
  registerDeployPull(api, logger.child("deploy"));
  registerDeployRelease(api, dataDir);
  if (builder) {
    const { Builder } = await import("../builder/builder.js");
    const { registerBuildRoutes } = await import("../builder/routes.js");
    registerBuildRoutes(
      api,
      new Builder({
        workDir: join(resolve(dataDir), "builds"),
        logger: logger.child("builder"),
        repoPolicy: {
          allowPrivate: opts.flags["allow-private-repos"] === true,
          // The platform as this builder knows it: itself and its node (the registry comes per build).
          platformHosts: () => [listen.host, ...(opts.values.node ? [opts.values.node] : [])],
        },
      }),
    );
  }
  let handedOff: () => void = () => {};
  const replaced = new Promise<"handoff">((done) => {
    handedOff = () => done("handoff");
  });
  registerSupervisorHandoff(api, {
    dataDir: resolve(dataDir),
    running: { version, dir: treeRoot },
    listen,
    server: () => api.server,
    readyTimeoutMs: 120_000,
    handedOff,
  });
  warnIfPublic("supervisor", listen.host);
  await api.listen(listenOptions({ host: listen.host, port: listen.port }));
  const address = `http://${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${listen.port}`;
  logger.info("listening", {
    address,
    mesh,
    tags: capabilityTags(kinds, builder),
    artifact_store: artifacts.name,
  });
  // After re-adoption and with the API up: a slow fetch (a large image) never blocks either.
  const pinned = supervisor.startPinned(pinnedApps).catch((err: unknown) => {
    logger.error("--app start loop failed", { error: (err as Error).message });
  });

  if (opts.values.node) {
    const { RosterClient } = await import("../mesh/client.js");
    const client = new RosterClient({
      nodeUrl: opts.values.node,
      ...(rosterKey ? { nodeKey: rosterKey } : {}),
      logger: logger.child("roster"),
    });
    client.start(
      (): PeerRecord => ({
        kind: "supervisor",
        name: opts.values.name!,
        address,
        ula: listen.host,
        version,
        tags: capabilityTags(kinds, builder),
      }),
    );
    roster = client;
  }

  const signal = await Promise.race([untilSignal(), replaced]);
  logger.info(
    signal === "handoff"
      ? "handed over to the new release; runners keep running"
      : "stopping; runners keep running",
    { signal },
  );
  await roster?.stop({ deregister: signal !== "handoff" }).catch(() => {});
  await meshJoiner?.stop().catch(() => {});
  await api.close();
  await supervisor.close();
  await pinned;
  artifacts.close();
  return 0;
}

/** `tcli env` values, asked of the node with this supervisor's API key (the fleet's). */
function secretEnvFrom(
  nodeUrl: string,
  apiKey: string,
  logger: Logger,
): (uuid: string) => Promise<Record<string, string>> {
  const source = new SecretEnvSource({ nodeUrl, apiKey, logger: logger.child("env") });
  return (uuid) => source.envFor(uuid);
}
