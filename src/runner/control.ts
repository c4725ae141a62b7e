import { chmod, lstat, unlink } from "node:fs/promises";
import net from "node:net";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { RuntimeKind, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { launchExtras } from "./launch.js";

/**
 * The runner's control socket: a unix socket speaking newline-delimited JSON. Each connection
 * carries exactly one request line and gets exactly one reply line, then closes. The supervisor
 * is the only client; the runner keeps serving its app whether or not anyone ever connects.
 */

export type ControlRequest =
  | { cmd: "ping" }
  | { cmd: "health" }
  | { cmd: "stop" }
  | { cmd: "deploy"; spec: WorkloadSpec }
  | HandoffRequest
  | AssignRequest;

/**
 * Hand the app to a new runner process running `entry` (the supervisor's `tabbify.js`, after a
 * platform upgrade): it takes over the app address's socket and this control socket, then this
 * runner drains and exits (succession.ts). Answered once the new one serves.
 */
export interface HandoffRequest {
  cmd: "handoff";
  entry: string;
}

/**
 * To a warm spare only: become the runner of this app. The spare binds `control_sock` (this
 * app's socket) before it answers, so the supervisor proves it there like a freshly spawned
 * runner. `log` is where the supervisor moved the spare's log (its stdout/stderr follow the file).
 */
export interface AssignRequest {
  cmd: "assign";
  uuid: string;
  bind: string;
  control_sock: string;
  log: string;
  spec: WorkloadSpec;
  /** For the roster; travels here rather than in the spare's environment (see launch.ts). */
  node_key?: string;
  /** Who the app's workloads run as. */
  user?: WorkloadUser;
}

/** Lifecycle of the runner as a whole (not of one workload). */
/** `idle`: an on_request app scaled to zero; its next request starts the workload again. */
export type RunnerState = "starting" | "running" | "idle" | "restarting" | "stopping";

export interface HealthReply {
  reply: "health";
  state: RunnerState;
  app_ula: string;
  app_uuid: string;
  /** The runner's own pid. */
  pid: number;
  workload_pid: number | null;
  runtime: RuntimeKind;
  /** What the current workload runs (image digest, file sha256), when known. */
  version: string | null;
  image_ref?: string;
  bound_addr: string;
  app_health: "serving" | "unavailable";
  app_health_reason?: string;
  /** Workload restarts after crashes since the runner started (swaps are not restarts). */
  restarts: number;
  /** Set once a limit stopped a workload or a request: `oom` (memory), `fuel` (a wasm request's budget). */
  last_limit_reason?: "oom" | "cpu" | "fuel";
  /** Who carries the app's bytes to the workload: the kernel's DNAT or the runner's proxy. */
  hop?: "kernel" | "userspace";
  hop_reason?: string;
  /** An egress app's: whether the kernel also holds its workload to the proxy, and why not. */
  egress?: "proxy+kernel" | "proxy";
  egress_reason?: string;
  /** The current workload's private address (the supervisor's kernel-hop reconcile reads it). */
  workload_host?: string;
  workload_port?: number;
}

export type ControlReply =
  | { reply: "pong" }
  | HealthReply
  | { reply: "ok"; version?: string | null }
  | { reply: "handed-over"; pid: number; workload_pid: number | null }
  | { reply: "err"; message: string };

/** Where a runner keeps its current workload's pid: beside its control socket. */
export function workloadPidPath(controlSock: string): string {
  return `${controlSock.replace(/\.sock$/, "")}.workload`;
}

const maxRequestBytes = 1024 * 1024;
const commands = new Set(["ping", "health", "stop", "deploy", "assign", "handoff"]);

/** Parses one request line. Throws CONTROL_BAD_REQUEST with a message fit for the reply. */
export function parseControlRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new TabbifyError("CONTROL_BAD_REQUEST", "request is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TabbifyError("CONTROL_BAD_REQUEST", "request must be a JSON object");
  }
  const cmd = (value as { cmd?: unknown }).cmd;
  if (typeof cmd !== "string" || !commands.has(cmd)) {
    throw new TabbifyError("CONTROL_BAD_REQUEST", `unknown cmd ${JSON.stringify(cmd ?? null)}`);
  }
  if (cmd === "deploy") {
    const spec = (value as { spec?: unknown }).spec;
    if (typeof spec !== "object" || spec === null || typeof (spec as WorkloadSpec).runtime !== "string") {
      throw new TabbifyError("CONTROL_BAD_REQUEST", "deploy needs a spec with a runtime");
    }
    return { cmd, spec: spec as WorkloadSpec };
  }
  if (cmd === "handoff") {
    const entry = (value as { entry?: unknown }).entry;
    if (typeof entry !== "string" || !entry.startsWith("/") || !entry.endsWith("tabbify.js"))
      throw new TabbifyError("CONTROL_BAD_REQUEST", "handoff needs the absolute path of a tabbify.js");
    return { cmd, entry };
  }
  if (cmd === "assign") {
    const req = value as Partial<Record<keyof AssignRequest, unknown>>;
    for (const field of ["uuid", "bind", "control_sock", "log"] as const) {
      if (typeof req[field] !== "string" || req[field] === "")
        throw new TabbifyError("CONTROL_BAD_REQUEST", `assign needs ${field}`);
    }
    const spec = req.spec;
    if (typeof spec !== "object" || spec === null || typeof (spec as WorkloadSpec).runtime !== "string") {
      throw new TabbifyError("CONTROL_BAD_REQUEST", "assign needs a spec with a runtime");
    }
    try {
      launchExtras(value as Record<string, unknown>);
    } catch (err) {
      throw new TabbifyError("CONTROL_BAD_REQUEST", (err as Error).message);
    }
    return req as AssignRequest;
  }
  return { cmd } as ControlRequest;
}

export interface ControlServer {
  close(): Promise<void>;
  /** Stops accepting and removes the socket file at once; connections open keep their answer. */
  release(): Promise<void>;
}

/**
 * Listens on `path` (mode 0600). A leftover socket file is removed only when nothing answers on
 * it; a live one belongs to another runner and makes this throw CONTROL_SOCKET_IN_USE.
 */
export async function serveControlSocket(
  path: string,
  handle: (req: ControlRequest) => Promise<ControlReply>,
  logger: Logger,
): Promise<ControlServer> {
  await removeStaleSocket(path);
  const server = net.createServer((conn) => {
    let buffered = "";
    let answered = false;
    conn.setEncoding("utf8");
    conn.on("error", () => conn.destroy());
    const answer = (reply: ControlReply) => {
      answered = true;
      conn.end(`${JSON.stringify(reply)}\n`);
    };
    conn.on("data", (chunk: string) => {
      if (answered) return;
      buffered += chunk;
      if (buffered.length > maxRequestBytes) {
        answer({ reply: "err", message: "request too large" });
        return;
      }
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      const line = buffered.slice(0, newline);
      answered = true;
      let req: ControlRequest;
      try {
        req = parseControlRequest(line);
      } catch (err) {
        answer({ reply: "err", message: (err as Error).message });
        return;
      }
      handle(req).then(answer, (err: unknown) => {
        logger.warn("control command failed", { cmd: req.cmd, error: (err as Error).message });
        answer({ reply: "err", message: (err as Error).message });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        unlink(path).catch(() => {});
      }),
    release: async () => {
      server.close();
      await unlink(path).catch(() => {});
    },
  };
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) {
      throw new TabbifyError("CONTROL_SOCKET_IN_USE", `${path} exists and is not a socket`);
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  const alive = await controlRequest(path, { cmd: "ping" }, { timeoutMs: 1000 }).then(
    () => true,
    () => false,
  );
  if (alive) throw new TabbifyError("CONTROL_SOCKET_IN_USE", `another runner answers on ${path}`);
  await unlink(path).catch((err: unknown) => {
    if (!isErrno(err, "ENOENT")) throw err;
  });
}

/** Sends one request and waits for its reply line. Throws CONTROL_UNREACHABLE / CONTROL_TIMEOUT. */
export function controlRequest(
  path: string,
  req: ControlRequest,
  opts: { timeoutMs?: number } = {},
): Promise<ControlReply> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  return new Promise<ControlReply>((resolve, reject) => {
    const conn = net.createConnection(path);
    let buffered = "";
    let settled = false;
    const finish = (err: Error | undefined, reply?: ControlReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(
      () => finish(new TabbifyError("CONTROL_TIMEOUT", `no reply from runner within ${timeoutMs} ms`)),
      timeoutMs,
    );
    conn.setEncoding("utf8");
    conn.on("connect", () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on("data", (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      try {
        finish(undefined, JSON.parse(buffered.slice(0, newline)) as ControlReply);
      } catch {
        finish(new TabbifyError("CONTROL_BAD_REPLY", "runner replied with something that is not JSON"));
      }
    });
    conn.on("end", () =>
      finish(new TabbifyError("CONTROL_BAD_REPLY", "runner closed the control socket without a reply")),
    );
    conn.on("error", (err) =>
      finish(new TabbifyError("CONTROL_UNREACHABLE", `control socket unreachable: ${err.message}`)),
    );
  });
}
