/**
 * `tabbify runner`: one app's workload behind its app address. Spawned (detached) by the
 * supervisor, never by hand. The workload spec and secrets arrive in the environment, not argv,
 * so they do not show in `ps`.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { TabbifyError } from "../core/errors.js";
import type { PeerRecord } from "../mesh/roster.js";
import type { WorkloadSpec } from "../runtimes/runtime.js";
import { type OptionSpec, optionsHelp, parseListen, parseOptions, required } from "./flags.js";

const specs: OptionSpec[] = [
  { flag: "uuid", help: "the app's uuid" },
  { flag: "control-sock", help: "unix socket path for the supervisor's control protocol" },
  { flag: "data-dir", help: "the supervisor's data directory" },
  { flag: "bind", help: "the app address to serve on, HOST:PORT" },
  { flag: "node", env: "TABBIFY_NODE_URL", help: "node URL to register with as a roster peer" },
  { flag: "parent", help: "the supervisor's name, for the roster" },
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
];

function parseJsonEnv<T>(env: NodeJS.ProcessEnv, name: string): T | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    // The value may hold secrets, so only its name is reported.
    throw new TabbifyError("USAGE", `${name} is not valid JSON`);
  }
}

function positiveInt(value: string | undefined, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new TabbifyError("USAGE", `--${flag} wants a positive integer`);
  return n;
}

function packageVersion(): string {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, specs);
  if (opts.help) {
    process.stdout.write(
      optionsHelp("tabbify runner --uuid U --control-sock PATH --data-dir DIR --bind HOST:PORT", specs),
    );
    return 0;
  }
  const uuidInput = required(opts.values.uuid, "--uuid");
  const controlSock = required(opts.values["control-sock"], "--control-sock");
  required(opts.values["data-dir"], "--data-dir");
  const bind = parseListen(required(opts.values.bind, "--bind"));
  const spec = parseJsonEnv<WorkloadSpec>(env, "RUNNER_SPEC");
  if (!spec) throw new TabbifyError("USAGE", "RUNNER_SPEC (the workload spec as JSON) is required");
  const extraEnv = parseJsonEnv<Record<string, string>>(env, "RUNNER_EXTRA_ENV");
  if (extraEnv) spec.env = { ...spec.env, ...extraEnv };
  const nodeKey = env.TABBIFY_NODE_KEY;
  // Nothing below needs these in the environment, and a runtime must never pass them on.
  for (const name of ["RUNNER_SPEC", "RUNNER_EXTRA_ENV", "TABBIFY_NODE_KEY"]) delete process.env[name];

  // Cold start is the runner's boot plus the workload's, so the workload starts first, with only
  // its runtime's module loaded; the rest of the runner (the uuid and address libraries alone
  // take tens of milliseconds) loads while the workload boots.
  const { loadRuntime } = await import("../runtimes/load.js");
  const { startWorkload } = await import("../runner/workload.js");
  const firstWorkload = loadRuntime(spec.runtime).then((runtime) => startWorkload(runtime, spec));
  // Settled here so a failed start is not an unhandled rejection; Runner.start reports it.
  await firstWorkload.catch(() => {});
  const abandon = (err: unknown) =>
    firstWorkload.then(
      (w) => w.stop(2_000).then(() => Promise.reject(err)),
      () => Promise.reject(err),
    );

  const [{ deriveAppUla, parseAppUuid }, { createLogger }, controlModule, { Runner }, { waitHealthy }] =
    await Promise.all([
      import("../core/address.js"),
      import("../core/log.js"),
      import("../runner/control.js"),
      import("../runner/runner.js"),
      import("../runtimes/health.js"),
    ]);
  const { serveControlSocket, workloadPidPath } = controlModule;
  let uuid: string;
  try {
    uuid = parseAppUuid(uuidInput);
  } catch (err) {
    return abandon(err);
  }

  const logger = createLogger(`runner ${uuid}`);
  const runner = new Runner({
    uuid,
    appUla: deriveAppUla(uuid),
    bindHost: bind.host,
    bindPort: bind.port,
    spec,
    runtimeFor: loadRuntime,
    firstWorkload,
    waitHealthy: async (upstream, o) => {
      await waitHealthy(upstream, o);
    },
    logger,
    healthTimeoutMs: positiveInt(opts.values["health-timeout-ms"], "health-timeout-ms"),
    restartBaseMs: positiveInt(opts.values["restart-base-ms"], "restart-base-ms"),
    restartCapMs: positiveInt(opts.values["restart-cap-ms"], "restart-cap-ms"),
    onWorkload: (pid) => {
      const path = workloadPidPath(controlSock);
      const temp = `${path}.${process.pid}.tmp`;
      try {
        writeFileSync(temp, pid === undefined ? "" : `${pid}\n`, { mode: 0o600 });
        renameSync(temp, path);
      } catch (err) {
        logger.warn("cannot record the workload pid", { error: (err as Error).message });
      }
    },
  });

  let finished: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finished = resolve;
  });
  const control = await serveControlSocket(
    controlSock,
    async (req) => {
      const reply = await runner.handle(req);
      // The reply must leave before the process does; exit on the next turn.
      if (req.cmd === "stop") setTimeout(() => finished(0), 50);
      return reply;
    },
    logger.child("control"),
  ).catch(abandon);

  try {
    await runner.start();
  } catch (err) {
    logger.error("the workload never got healthy; giving up", { error: (err as Error).message });
    await runner.stop().catch(() => {});
    await control.close();
    return 1;
  }
  logger.info("serving", { bound_addr: runner.boundAddr, workload_pid: runner.health().workload_pid });

  let roster: { stop(): Promise<void> } | undefined;
  const nodeUrl = opts.values.node;
  if (nodeUrl) {
    const { RosterClient } = await import("../mesh/client.js");
    const client = new RosterClient({ nodeUrl, nodeKey, logger: logger.child("roster") });
    const version = packageVersion();
    const parent = opts.values.parent;
    client.start(
      (): PeerRecord => ({
        kind: "runner",
        name: uuid,
        app_uuid: uuid,
        ...(parent ? { parent } : {}),
        address: `http://${runner.boundAddr}`,
        ula: bind.host,
        version,
        tags: ["runner"],
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
  await roster?.stop().catch(() => {});
  await control.close();
  // Keep-alive sockets and timers must not hold a stopped runner alive.
  process.exit(code);
}
