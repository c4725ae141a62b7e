/**
 * `tabbify runner`: one app's workload behind its app address. Spawned (detached) by the
 * supervisor, never by hand, in one of two ways:
 * - for one app (`--uuid`): the workload spec, the node key and the workload's user arrive as
 *   one JSON line on stdin (see runner/launch.ts), never in argv or the environment, which the
 *   workload could read in /proc;
 * - as a warm spare (`--spare`): it boots everything ahead (modules, prewarmable runtimes) and
 *   waits on its control socket until the supervisor assigns it an app, so a cold start pays for
 *   the workload's boot only, not for the runner's.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { PeerRecord } from "../mesh/roster.js";
import type { AssignRequest, ControlReply, ControlRequest } from "../runner/control.js";
import { stampLines } from "../runner/log-stamp.js";
import type { Succession } from "../runner/succession.js";
import type { Runtime, RuntimeKind, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { egressKernelMode } from "./egress-kernel-option.js";
import { intOption, type OptionSpec, optionsHelp, parseListen, parseOptions, required } from "./flags.js";
import { applyLogOptions, logOptions } from "./log-options.js";

export const specs: OptionSpec[] = [
  { flag: "uuid", help: "the app's uuid" },
  { flag: "control-sock", help: "unix socket path for the supervisor's control protocol" },
  { flag: "data-dir", help: "the supervisor's data directory" },
  { flag: "bind", help: "the app address to serve on, HOST:PORT" },
  {
    flag: "spare",
    boolean: true,
    help: "boot ahead and wait on --control-sock to be assigned an app (no --uuid, --bind or launch line)",
  },
  {
    flag: "successor",
    boolean: true,
    help: "take the app over from the runner that started this one (its launch line and app socket come over IPC)",
  },
  { flag: "log", help: "this runner's log file (its stdout and stderr), rotated while it runs" },
  { flag: "node", env: "TABBIFY_NODE_URL", help: "node URL to register with as a roster peer" },
  { flag: "parent", help: "the supervisor's name, for the roster" },
  {
    flag: "kernel-hop",
    help: "the supervisor's nftables table: the runner maps its app address to each new workload there (DNAT) instead of carrying every byte itself",
  },
  {
    flag: "egress-kernel",
    default: "auto",
    help: "on: an egress app's workload whose uid nft cannot confine to its proxy fails to start (the supervisor's --egress-kernel on); auto: it runs with only the proxy enforcing, said in its log and health",
  },
  {
    flag: "health-timeout-ms",
    env: "RUNNER_HEALTH_TIMEOUT_MS",
    default: "25000",
    help: "how long a new workload may take to answer",
  },
  {
    flag: "restart-base-ms",
    env: "RUNNER_RESTART_BASE_MS",
    default: "1000",
    help: "first delay before restarting a crashed workload (doubles per crash)",
  },
  {
    flag: "restart-cap-ms",
    env: "RUNNER_RESTART_CAP_MS",
    default: "30000",
    help: "longest delay before restarting a crashed workload",
  },
  ...logOptions,
];

function packageVersion(): string {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}

/**
 * Every line in the runner log (fds 1 and 2, opened on it by the supervisor) starts with the time
 * it arrived: the workload's stdout and stderr, and the runner's own lines.
 */
const workloadOutput = {
  stdout: stampLines((text) => process.stdout.write(text)),
  stderr: stampLines((text) => process.stderr.write(text)),
};
const ownLog = stampLines((text) => process.stderr.write(text));

/** Everything a runner needs besides its first runtime, loaded in one go. */
async function loadRunnerModules() {
  const [address, log, control, runner, health, rotation, kernelHop] = await Promise.all([
    import("../core/address.js"),
    import("../core/log.js"),
    import("../runner/control.js"),
    import("../runner/runner.js"),
    import("../runtimes/health.js"),
    import("../runner/log-rotation.js"),
    import("../runner/kernel-hop.js"),
  ]);
  return { ...address, ...log, ...control, ...runner, ...health, ...rotation, ...kernelHop };
}
type RunnerModules = Awaited<ReturnType<typeof loadRunnerModules>>;

interface RunnerSettings {
  dataDir: string;
  healthTimeoutMs: number;
  restartBaseMs: number;
  restartCapMs: number;
  nodeUrl: string | undefined;
  parent: string | undefined;
  kernelHopTable: string | undefined;
  egressKernel: "auto" | "on";
}

interface AppParams {
  uuid: string;
  bind: { host: string; port: number };
  spec: WorkloadSpec;
  user: WorkloadUser | undefined;
  nodeKey: string | undefined;
  controlSock: string;
  logPath: string | undefined;
  runtimeFor: (kind: RuntimeKind) => Promise<Runtime>;
  /** Already starting: the caller starts it before anything else, since it is most of cold start. */
  firstWorkload: Promise<Workload>;
  /** Set when this runner takes the app over from the runner before it (succession.ts). */
  succession?: Succession;
}

/** The flags of a runner taking over `app` from this one (`--successor` is added by handOver). */
function successorArgs(app: AppParams, settings: RunnerSettings, bind: string): string[] {
  return [
    "--uuid",
    app.uuid,
    "--control-sock",
    app.controlSock,
    "--data-dir",
    settings.dataDir,
    "--bind",
    bind,
    ...(app.logPath ? ["--log", app.logPath] : []),
    ...(settings.nodeUrl ? ["--node", settings.nodeUrl] : []),
    ...(settings.parent ? ["--parent", settings.parent] : []),
    ...(settings.kernelHopTable ? ["--kernel-hop", settings.kernelHopTable] : []),
    // Only when on: a runner of an earlier version (a rollback's successor) knows no such flag.
    ...(settings.egressKernel === "on" ? ["--egress-kernel", "on"] : []),
    "--health-timeout-ms",
    String(settings.healthTimeoutMs),
    "--restart-base-ms",
    String(settings.restartBaseMs),
    "--restart-cap-ms",
    String(settings.restartCapMs),
  ];
}

/** How often a live runner checks its log's size (copy-truncate past m.logRotateBytes). */
const LOG_CHECK_INTERVAL_MS = 10_000;

/**
 * Builds the app's Runner and serves the app's control socket. Throws (after stopping the first
 * workload) when the socket cannot be served, e.g. another runner answers on it. `run()` then
 * starts the app and serves until stopped; it ends the process.
 */
async function openApp(
  app: AppParams,
  settings: RunnerSettings,
  m: RunnerModules,
): Promise<{ run(): Promise<number> }> {
  const logger = m.createLogger(`runner ${app.uuid}`);
  let ownsPidFile = !app.succession;
  let workloadPid: number | undefined;
  let handedOver = false;
  const runner = new m.Runner({
    uuid: app.uuid,
    appUla: m.deriveAppUla(app.uuid),
    bindHost: app.bind.host,
    bindPort: app.bind.port,
    spec: app.spec,
    ...(app.user ? { user: app.user } : {}),
    runtimeFor: app.runtimeFor,
    firstWorkload: app.firstWorkload,
    waitHealthy: async (upstream, o) => {
      await m.waitHealthy(upstream, o);
    },
    logger,
    healthTimeoutMs: settings.healthTimeoutMs,
    restartBaseMs: settings.restartBaseMs,
    restartCapMs: settings.restartCapMs,
    ...(settings.kernelHopTable
      ? { kernelHop: new m.KernelHop(settings.kernelHopTable, { host: app.bind.host, port: app.bind.port }) }
      : {}),
    ...(app.succession ? { listenHandle: app.succession.listener } : {}),
    onWorkload: (pid) => {
      // The pid file is the predecessor's until this runner took the app over, and the
      // successor's once this one handed it on.
      workloadPid = pid;
      if (ownsPidFile) recordWorkload(pid);
    },
  });

  function recordWorkload(pid: number | undefined): void {
    const path = m.workloadPidPath(app.controlSock);
    const temp = `${path}.${process.pid}.tmp`;
    try {
      writeFileSync(temp, pid === undefined ? "" : `${pid}\n`, { mode: 0o600 });
      renameSync(temp, path);
    } catch (err) {
      logger.warn("cannot record the workload pid", { error: (err as Error).message });
    }
  }

  let finished: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finished = resolve;
  });
  /** Hands the app to a runner of `entry` (succession.ts); this one then drains and exits. */
  const handoff = async (entry: string): Promise<ControlReply> => {
    const blocker = runner.successionBlocker();
    if (blocker) return { reply: "err", message: `cannot hand the app over: ${blocker}` };
    const { handOver } = await import("../runner/succession.js");
    const next = await handOver({
      entry,
      args: successorArgs(app, settings, runner.boundAddr),
      config: {
        spec: runner.currentSpec,
        ...(app.nodeKey ? { node_key: app.nodeKey } : {}),
        ...(app.user ? { user: app.user } : {}),
      },
      listener: runner.listener,
      releaseControl: () => control.release(),
      timeoutMs: settings.healthTimeoutMs + 30_000,
    });
    handedOver = true;
    ownsPidFile = false;
    logger.info("handed the app to a new runner; draining", { successor_pid: next.pid });
    // After the reply has left: drain what is under way here, then exit.
    setTimeout(() => {
      runner.retireForSuccessor().then(
        () => finished(0),
        () => finished(1),
      );
    }, 50);
    return { reply: "handed-over", ...next };
  };
  const onControl = async (req: ControlRequest): Promise<ControlReply> => {
    if (req.cmd === "handoff") return handoff(req.entry);
    const reply = await runner.handle(req);
    // The reply must leave before the process does; exit on the next turn.
    if (req.cmd === "stop") setTimeout(() => finished(0), 50);
    return reply;
  };
  const serveControl = () => m.serveControlSocket(app.controlSock, onControl, logger.child("control"));

  let control: { close(): Promise<void>; release(): Promise<void> };
  try {
    // A successor serves the control socket only once its predecessor gave it up (in run()).
    control = app.succession ? { close: async () => {}, release: async () => {} } : await serveControl();
  } catch (err) {
    // Nothing may be left running by a runner that cannot be reached.
    await app.firstWorkload.then(
      (w) => w.stop(2_000),
      () => {},
    );
    throw err;
  }

  const run = async (): Promise<number> => {
    try {
      await runner.start();
    } catch (err) {
      logger.error("the workload never got healthy; giving up", { error: (err as Error).message });
      await runner.stop().catch(() => {});
      await control.close();
      return 1;
    }
    if (app.succession) {
      if (app.succession.abandon) process.off("SIGTERM", app.succession.abandon);
      await app.succession.serving(runner.health().workload_pid);
      control = await serveControl();
      ownsPidFile = true;
      recordWorkload(workloadPid);
      app.succession.controlReady();
    }
    logger.info("serving", { bound_addr: runner.boundAddr, workload_pid: runner.health().workload_pid });
    const rotation = app.logPath
      ? m.watchLogSize({
          path: app.logPath,
          maxBytes: m.logRotateBytes,
          intervalMs: LOG_CHECK_INTERVAL_MS,
          logger: logger.child("log"),
        })
      : undefined;

    let roster: { stop(opts?: { deregister?: boolean }): Promise<void> } | undefined;
    if (settings.nodeUrl) {
      const { RosterClient } = await import("../mesh/client.js");
      const client = new RosterClient({
        nodeUrl: settings.nodeUrl,
        nodeKey: app.nodeKey,
        logger: logger.child("roster"),
      });
      const version = packageVersion();
      const parent = settings.parent;
      client.start(
        (): PeerRecord => ({
          kind: "runner",
          name: app.uuid,
          app_uuid: app.uuid,
          ...(parent ? { parent } : {}),
          address: `http://${runner.boundAddr}`,
          ula: app.bind.host,
          version,
          // `idle`: an on_request app scaled to zero (the roster shows it; a request wakes it).
          tags: runner.health().state === "idle" ? ["runner", "idle"] : ["runner"],
        }),
      );
      roster = client;
    }

    const onSignal = (signal: NodeJS.Signals) => {
      logger.info("stopping", { signal });
      runner.stop().then(
        () => finished(0),
        () => finished(1),
      );
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);

    const code = await done;
    rotation?.stop();
    // Handed over: the successor registered under the same name and owns the control socket path.
    await roster?.stop({ deregister: !handedOver }).catch(() => {});
    if (!handedOver) await control.close();
    // Keep-alive sockets and timers must not hold a stopped runner alive.
    process.exit(code);
  };
  return { run };
}

/** Adopts what a killed predecessor left running for this spec, else starts a fresh workload. */
async function firstWorkloadFor(
  runtime: Runtime,
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
): Promise<Workload> {
  const { startWorkload } = await import("../runner/workload.js");
  return (await runtime.adopt?.(spec, user)) ?? startWorkload(runtime, spec, user);
}

async function runForApp(opts: ReturnType<typeof parseOptions>, settings: RunnerSettings) {
  const uuidInput = required(opts.values.uuid, "--uuid");
  const controlSock = required(opts.values["control-sock"], "--control-sock");
  const bind = parseListen(required(opts.values.bind, "--bind"));
  const { readLaunchConfig } = await import("../runner/launch.js");
  // A successor gets its launch line and the app's socket from the runner it replaces.
  const succession = opts.flags.successor
    ? await (await import("../runner/succession.js")).Succession.receive()
    : undefined;
  const { spec, node_key: nodeKey, user } = succession?.config ?? (await readLaunchConfig(process.stdin));

  // Cold start is the runner's boot plus the workload's, so the workload starts first, with only
  // its runtime's module loaded; the rest of the runner (the uuid and address libraries alone
  // take tens of milliseconds) loads while the workload boots.
  const { loadRuntime } = await import("../runtimes/load.js");
  const { startWorkload } = await import("../runner/workload.js");
  // A successor starts a workload of its own: the one running is its predecessor's, to drain.
  const firstWorkload = loadRuntime(spec.runtime, { output: workloadOutput }).then((runtime) =>
    succession ? startWorkload(runtime, spec, user) : firstWorkloadFor(runtime, spec, user),
  );
  if (succession) {
    // Stopped before it serves (its predecessor gave up on it): nothing it started stays.
    succession.abandon = () => {
      firstWorkload.then((w) => w.stop(2_000)).finally(() => process.exit(1));
    };
    process.once("SIGTERM", succession.abandon);
  }
  // Settled here so a failed start is not an unhandled rejection; Runner.start reports it.
  await firstWorkload.catch(() => {});
  const abandon = (err: unknown) =>
    firstWorkload.then(
      (w) => w.stop(2_000).then(() => Promise.reject(err)),
      () => Promise.reject(err),
    );

  const modules = await loadRunnerModules();
  let uuid: string;
  try {
    uuid = modules.parseAppUuid(uuidInput);
  } catch (err) {
    return abandon(err);
  }
  const app = await openApp(
    {
      uuid,
      bind,
      spec,
      user,
      nodeKey,
      controlSock,
      logPath: opts.values.log,
      runtimeFor: (kind) => loadRuntime(kind, { output: workloadOutput }),
      firstWorkload,
      ...(succession ? { succession } : {}),
    },
    settings,
    modules,
  );
  return app.run();
}

/** How often an unassigned spare checks that the supervisor that spawned it still lives. */
const PARENT_CHECK_MS = 500;

async function runSpare(opts: ReturnType<typeof parseOptions>, settings: RunnerSettings): Promise<number> {
  const spareSock = required(opts.values["control-sock"], "--control-sock");
  const parentPid = process.ppid;
  const modules = await loadRunnerModules();
  const { loadRuntime } = await import("../runtimes/load.js");
  const { runtimeKinds } = await import("../runtimes/runtime.js");
  await import("../runner/workload.js");
  if (settings.nodeUrl) await import("../mesh/client.js");
  const logger = modules.createLogger(`runner spare ${process.pid}`);

  // One instance per kind for the spare's whole life: the instance holds what prewarm booted.
  const runtimes = new Map<RuntimeKind, Promise<Runtime>>();
  const runtimeFor = (kind: RuntimeKind): Promise<Runtime> => {
    let runtime = runtimes.get(kind);
    if (!runtime) {
      runtime = loadRuntime(kind, { output: workloadOutput });
      runtimes.set(kind, runtime);
      runtime.catch(() => runtimes.delete(kind));
    }
    return runtime;
  };
  for (const kind of runtimeKinds) {
    runtimeFor(kind)
      .then((runtime) => runtime.prewarm?.())
      .catch((err: unknown) => {
        logger.warn("prewarm failed; that runtime will start cold", {
          runtime: kind,
          error: (err as Error).message,
        });
      });
  }
  const discardPrewarmed = (keep?: RuntimeKind) =>
    Promise.all(
      [...runtimes].map(([kind, runtime]) =>
        kind === keep ? undefined : runtime.then((r) => r.discardPrewarmed?.()).catch(() => {}),
      ),
    );

  let assigning = false;
  let spareDone: (code: number) => void = () => {};
  const spareEnded = new Promise<number>((resolve) => {
    spareDone = resolve;
  });
  let appReady: (app: { run(): Promise<number> }) => void = () => {};
  const assigned = new Promise<{ run(): Promise<number> }>((resolve) => {
    appReady = resolve;
  });

  const assign = async (req: AssignRequest): Promise<{ run(): Promise<number> }> => {
    const uuid = modules.parseAppUuid(req.uuid);
    const bind = parseListen(req.bind);
    const spec = req.spec;
    // What `ps` shows, and what the supervisor checks before it signals a recorded pid.
    process.title = `tabbify runner --uuid ${uuid} --control-sock ${req.control_sock}`;
    const firstWorkload = runtimeFor(spec.runtime).then((runtime) =>
      firstWorkloadFor(runtime, spec, req.user),
    );
    firstWorkload.catch(() => {});
    void discardPrewarmed(spec.runtime);
    logger.info("assigned", { uuid, runtime: spec.runtime });
    return openApp(
      {
        uuid,
        bind,
        spec,
        user: req.user,
        nodeKey: req.node_key,
        controlSock: req.control_sock,
        logPath: req.log,
        runtimeFor,
        firstWorkload,
      },
      settings,
      modules,
    );
  };

  const spareControl = await modules.serveControlSocket(
    spareSock,
    async (req: ControlRequest): Promise<ControlReply> => {
      switch (req.cmd) {
        case "ping":
          return { reply: "pong" };
        case "stop":
          if (assigning) return { reply: "err", message: "this spare is being assigned an app" };
          setTimeout(() => spareDone(0), 50);
          return { reply: "ok" };
        case "assign": {
          if (assigning) return { reply: "err", message: "this spare was already assigned an app" };
          assigning = true;
          try {
            appReady(await assign(req));
            return { reply: "ok" };
          } catch (err) {
            // A spare is used once: one that failed its assignment goes away.
            setTimeout(() => spareDone(1), 50);
            throw err;
          }
        }
        default:
          return { reply: "err", message: "this runner is a spare with no app yet" };
      }
    },
    logger.child("control"),
  );
  const parentWatch = setInterval(() => {
    if (!assigning && process.ppid !== parentPid) {
      logger.info("the supervisor that spawned this spare is gone; exiting");
      spareDone(0);
    }
  }, PARENT_CHECK_MS);
  const onSignal = () => {
    if (!assigning) spareDone(0);
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  logger.info("spare ready", { control_sock: spareSock });

  const outcome = await Promise.race([
    spareEnded.then((code) => ({ code })),
    assigned.then((app) => ({ app })),
  ]);
  clearInterval(parentWatch);
  process.off("SIGTERM", onSignal);
  process.off("SIGINT", onSignal);
  await spareControl.close();
  if ("app" in outcome) return outcome.app.run();
  await discardPrewarmed();
  process.exit(outcome.code);
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, specs);
  if (opts.help) {
    process.stdout.write(
      optionsHelp(
        "tabbify runner --uuid U --control-sock PATH --data-dir DIR --bind HOST:PORT\n       tabbify runner --spare --control-sock PATH --data-dir DIR",
        specs,
      ),
    );
    return 0;
  }
  // Its own lines share the runner log with the workload's, stamped the same way (log-stamp.ts).
  applyLogOptions(opts.values, { write: (line) => ownLog.write(line), time: false });
  const settings: RunnerSettings = {
    dataDir: required(opts.values["data-dir"], "--data-dir"),
    healthTimeoutMs: intOption(opts.values["health-timeout-ms"], "health-timeout-ms"),
    restartBaseMs: intOption(opts.values["restart-base-ms"], "restart-base-ms"),
    restartCapMs: intOption(opts.values["restart-cap-ms"], "restart-cap-ms"),
    nodeUrl: opts.values.node,
    parent: opts.values.parent,
    kernelHopTable: opts.values["kernel-hop"],
    egressKernel: egressKernelMode(opts.values["egress-kernel"]),
  };
  if (settings.egressKernel === "on") (await import("../runner/workload.js")).requireEgressKernel();
  return opts.flags.spare ? runSpare(opts, settings) : runForApp(opts, settings);
}
