/**
 * A runner handing its app to a new runner process without a refused or failed request: how
 * `tabbify upgrade --restart-runners` puts runners on a new release. The old runner starts the
 * new one (`runner --successor`, detached, with an IPC channel) and sends it the app's launch
 * line and the app address's listening socket. The new one starts its own workload, waits for
 * its health and listens on the same socket; both accept while they overlap. Then the old runner
 * gives up its control socket, the new one serves it, and the old one answers the supervisor
 * with the new pids, stops accepting, lets its open requests finish and stops its workload.
 *
 *   successor → predecessor   {hello}
 *   predecessor → successor   {launch, config} + the listening socket
 *   successor → predecessor   {serving, workload_pid}     (its workload healthy, its proxy listening)
 *   predecessor → successor   {control-free}              (the old control socket closed)
 *   successor → predecessor   {control-ready}             (the new one answers on the same path)
 *
 * A successor that exits, or is not serving within the timeout, is killed; the old runner keeps
 * the app as it was and the handoff fails.
 */
import { spawn } from "node:child_process";
import { TabbifyError } from "../core/errors.js";
import type { LaunchConfig } from "./launch.js";

const P = "runner-succession";

type Message =
  | { type: typeof P; step: "hello" }
  | { type: typeof P; step: "launch"; config: LaunchConfig }
  | { type: typeof P; step: "serving"; workload_pid: number | null }
  | { type: typeof P; step: "control-free" }
  | { type: typeof P; step: "control-ready" };

function isStep<S extends Message["step"]>(m: unknown, step: S): m is Extract<Message, { step: S }> {
  return (m as { type?: unknown; step?: unknown })?.type === P && (m as { step?: unknown }).step === step;
}

export interface HandOverOptions {
  /** `node <entry> runner …args --successor`. */
  entry: string;
  args: string[];
  config: LaunchConfig;
  /** The app address's listening server. */
  listener: object;
  /** Closes this runner's control socket so the successor can serve the path. */
  releaseControl: () => Promise<void>;
  timeoutMs: number;
}

/** A listening net.Server's libuv handle, which Node passes between processes as is. */
export function rawHandle(server: object): object {
  const handle = (server as { _handle?: object | null })._handle;
  if (!handle) throw new TabbifyError("RUNNER_HANDOFF_FAILED", "the app address is not listening");
  return handle;
}

/** Predecessor side: resolves with the successor's pids once it serves the app and the control socket. */
export async function handOver(opts: HandOverOptions): Promise<{ pid: number; workload_pid: number | null }> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, opts.entry, "runner", ...opts.args, "--successor"],
    // stdout and stderr are this runner's: the app's log file.
    { env: process.env, detached: true, stdio: ["ignore", "inherit", "inherit", "ipc"] },
  );
  const exited = new Promise<string>((done) =>
    child.once("exit", (code, signal) => done(`the new runner exited (${signal ?? `code ${code}`})`)),
  );
  const next = <S extends Message["step"]>(step: S, timeoutMs: number) =>
    Promise.race([
      new Promise<Extract<Message, { step: S }>>((done) => {
        const on = (m: unknown) => {
          if (!isStep(m, step)) return;
          child.off("message", on);
          done(m);
        };
        child.on("message", on);
      }),
      exited.then((why) => Promise.reject(new Error(why))),
      new Promise<never>((_, fail) =>
        setTimeout(
          () => fail(new Error(`no "${step}" from the new runner within ${timeoutMs} ms`)),
          timeoutMs,
        ).unref(),
      ),
    ]);
  try {
    await next("hello", 30_000);
    // The raw socket handle, not the server: the successor listens on it with its own server.
    child.send({ type: P, step: "launch", config: opts.config }, rawHandle(opts.listener) as never);
    const serving = await next("serving", opts.timeoutMs);
    await opts.releaseControl();
    child.send({ type: P, step: "control-free" });
    await next("control-ready", 15_000);
    child.disconnect();
    child.unref();
    return { pid: child.pid!, workload_pid: serving.workload_pid };
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM first: the new runner stops the workload it started.
      child.kill("SIGTERM");
      const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(kill);
    }
    throw new TabbifyError("RUNNER_HANDOFF_FAILED", (err as Error).message);
  }
}

/** Successor side, over the channel to the predecessor. */
export class Succession {
  /** What a SIGTERM before the app is served here does (set by the runner's entry point). */
  abandon: (() => void) | undefined;

  private constructor(
    readonly config: LaunchConfig,
    readonly listener: object,
  ) {}

  /** Asks the predecessor for the launch line and the app address's socket. */
  static async receive(timeoutMs = 30_000): Promise<Succession> {
    const send = process.send?.bind(process);
    if (!send) throw new TabbifyError("USAGE", "--successor runs only when a runner starts it");
    return new Promise((done, fail) => {
      const timer = setTimeout(
        () => fail(new TabbifyError("USAGE", "no launch line from the runner before")),
        timeoutMs,
      );
      const on = (m: unknown, handle: unknown) => {
        if (!isStep(m, "launch") || !handle) return;
        clearTimeout(timer);
        process.off("message", on);
        // The channel stays open for the steps below but never keeps a failed runner alive.
        process.channel?.unref();
        done(new Succession(m.config, handle as object));
      };
      process.on("message", on);
      send({ type: P, step: "hello" });
    });
  }

  /** Says the app is served here; resolves once the predecessor gave up the control socket. */
  serving(workloadPid: number | null): Promise<void> {
    return new Promise((done) => {
      const finish = () => {
        process.off("message", on);
        process.off("disconnect", finish);
        done();
      };
      const on = (m: unknown) => {
        if (isStep(m, "control-free")) finish();
      };
      process.on("message", on);
      // A predecessor gone meanwhile left a stale socket, which serving the control socket removes.
      process.once("disconnect", finish);
      process.send?.({ type: P, step: "serving", workload_pid: workloadPid });
    });
  }

  /** Says the control socket answers here; the channel then closes. */
  controlReady(): void {
    process.send?.({ type: P, step: "control-ready" }, () => {
      if (process.connected) process.disconnect();
    });
  }
}
