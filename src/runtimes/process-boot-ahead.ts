import type { ChildProcess } from "node:child_process";
import { basename } from "node:path";
import type { Duplex } from "node:stream";
import type { ChildWorkload } from "./child.js";
import type { WorkloadSpec, WorkloadUser } from "./runtime.js";

/**
 * Booting a sleeping Node app's next workload ahead (an `on_request` app's wake, issue 20). Most
 * of a Node process's start is Node's own boot, before any of the app's code runs: 60-70 % of
 * `node server.js` to its first answer on an idle host, more on a loaded one, where it alone
 * exceeds the 200 ms a wake may take. So while the app sleeps, the process runtime starts its
 * command with a gate in front (`node --import <gate> server.js`): Node boots, the gate says so on
 * fd 3 and blocks reading it, and none of the app's code has run (no listener, no file opened, no
 * connection). The wake writes one byte; the gate closes fd 3 and the app loads as it would have.
 *
 * The gate only acts where `TABBIFY_BOOT_GATE_FD` names its fd, and removes that variable, so the
 * app never sees it and what the app forks (inheriting the `--import`) is not gated. When the
 * runner goes away without opening the gate (killed), the gate reads end-of-file and the process
 * exits without running the app.
 */

export const GATE_ENV = "TABBIFY_BOOT_GATE_FD";
/** The fd the gate waits on: the spawn's fourth stdio entry, a pipe. */
const GATE_FD = 3;

const gateSource = [
  'import{readSync,writeSync,closeSync}from"node:fs";',
  `const fd=Number(process.env.${GATE_ENV});delete process.env.${GATE_ENV};`,
  `if(fd===${GATE_FD}){`,
  'let n=-1;const b=Buffer.alloc(1);try{writeSync(fd,"r")}catch{}',
  // A pipe handed over non-blocking answers EAGAIN until the byte comes: wait a little and ask again.
  'for(;;){try{n=readSync(fd,b);break}catch(e){if(e.code!=="EAGAIN")break;Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,2)}}',
  "try{closeSync(fd)}catch{}if(n===0)process.exit(0)}",
].join("");

/** `--import` of the gate as a data: URL: nothing is written to disk, and any Node ≥ 18.19 takes it. */
export const GATE_IMPORT = `data:text/javascript,${encodeURIComponent(gateSource)}`;

/** Whether a command can be gated: it runs Node itself. */
export function isNodeCommand(file: string): boolean {
  const name = basename(file);
  return name === "node" || name === "nodejs";
}

/** A command's arguments with the gate in front of the app's. */
export function gatedArgs(args: string[]): string[] {
  return ["--import", GATE_IMPORT, ...args];
}

/** A workload booted ahead and waiting at its gate. */
export interface BootedAhead {
  /** What it was started for: the start's file, arguments, directory, environment (but its port), user and limits. */
  key: string;
  /** The spec and user it was booted for: a start with these very objects takes it unchecked. */
  spec: WorkloadSpec;
  user: WorkloadUser | undefined;
  workload: ChildWorkload;
  child: ChildProcess;
  /** The entry file whose hash becomes the workload's version once it runs. */
  entry: string | undefined;
}

/** The gate's pipe of a child spawned with fd 3 as a pipe. */
function gatePipe(child: ChildProcess): Duplex | undefined {
  const pipe = child.stdio[GATE_FD];
  return pipe && "write" in pipe ? (pipe as Duplex) : undefined;
}

/**
 * Resolves once the gate says Node has booted (true), or false when the child exits or the pipe
 * closes first, or `timeoutMs` passes.
 */
export function gateReached(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const pipe = gatePipe(child);
  if (!pipe) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (reached: boolean) => {
      clearTimeout(timer);
      pipe.off("data", onData);
      pipe.off("close", onEnd);
      child.off("exit", onEnd);
      resolve(reached);
    };
    const onData = () => done(true);
    const onEnd = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    pipe.on("data", onData);
    pipe.once("close", onEnd);
    child.once("exit", onEnd);
  });
}

/** Lets the gated app run: one byte, then our end of the pipe closes. */
export function openGate(child: ChildProcess): boolean {
  const pipe = gatePipe(child);
  if (!pipe || pipe.destroyed || child.exitCode !== null || child.signalCode !== null) return false;
  pipe.end("g");
  // Nothing more comes from the gate; reading on would only keep the pipe referenced.
  pipe.resume();
  return true;
}

export function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}
