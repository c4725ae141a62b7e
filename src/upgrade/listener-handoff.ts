/**
 * One listening socket per role, held by `tabbify up` and handed to each process of that role
 * over its IPC channel (Node passes socket handles between processes). Old and new processes of
 * a role accept on the same kernel socket while they overlap, and `up` keeps its own copy of the
 * socket open, so a role's port never refuses a connection while the role is replaced or
 * restarted: connections wait in the backlog until a process accepts them.
 *
 * The child asks for the socket (so no message can arrive before it listens for one); `up`
 * answers with the handle. Received descriptors are close-on-exec, so nothing a role spawns
 * (runners, workloads, git) inherits the socket or the channel.
 */
import type { ChildProcess } from "node:child_process";
import net from "node:net";
import { TabbifyError } from "../core/errors.js";

const WANTED = "tabbify-listener-wanted";
const HANDED = "tabbify-listener";

/** The raw libuv TCP handle Node sends between processes; opaque here. */
export type ListenerHandle = object;

/** A bound socket `up` owns for one role's port; `up` itself never accepts on it. */
export interface SharedListener {
  host: string;
  port: number;
  handle: ListenerHandle;
}

interface HandedListener {
  port: number;
  handle: ListenerHandle;
  from: ListenerSource;
}

/** Who handed this process its socket: `tabbify up`, or the process it replaces. */
export type ListenerSource = "up" | "predecessor";

let handed: HandedListener | undefined;

/**
 * Binds host:port for a role without listening or accepting in this process: the role's
 * processes call listen() on it. Throws LISTEN_FAILED naming the port when it is taken.
 */
export function bindSharedListener(host: string, port: number): SharedListener {
  const create = (net as unknown as { _createServerHandle: (...a: unknown[]) => unknown })
    ._createServerHandle;
  const handle = create(host, port, host.includes(":") ? 6 : 4);
  if (typeof handle === "number") {
    throw new TabbifyError("LISTEN_FAILED", `cannot bind ${host}:${port} (errno ${-handle})`);
  }
  return { host, port, handle: handle as ListenerHandle };
}

/** Answers the child's request for its socket; call right after spawning it with an IPC channel. */
export function offerListener(child: ChildProcess, listener: SharedListener): void {
  const onMessage = (msg: unknown) => {
    if ((msg as { type?: unknown })?.type !== WANTED) return;
    child.off("message", onMessage);
    child.send({ type: HANDED, port: listener.port }, listener.handle as net.Server, (err) => {
      // A child that died meanwhile simply never listens; its exit is reported elsewhere.
      void err;
    });
  };
  child.on("message", onMessage);
}

/**
 * In a role started by `up`: asks for and waits for the socket of its port. The IPC channel
 * stays open for the messages a role sends `up` (the node's upgrade requests) but no longer keeps
 * the process alive.
 */
export async function receiveListener(from: ListenerSource, timeoutMs = 15_000): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) throw new TabbifyError("USAGE", "TABBIFY_LISTENER_HANDOFF is set but there is no IPC channel");
  handed = await new Promise<HandedListener>((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off("message", onMessage);
      reject(new TabbifyError("LISTEN_FAILED", `no listening socket from tabbify up within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (msg: unknown, handle: unknown) => {
      const m = msg as { type?: unknown; port?: unknown };
      if (m?.type !== HANDED || typeof m.port !== "number" || !handle) return;
      clearTimeout(timer);
      process.off("message", onMessage);
      resolve({ port: m.port, handle: handle as ListenerHandle, from });
    };
    process.on("message", onMessage);
    send({ type: WANTED });
  });
  process.channel?.unref();
}

/** Whether `tabbify up` holds this process's socket (and so is the one that replaces it). */
export function listenerFromUp(): boolean {
  return handed?.from === "up";
}

/**
 * The options for a role's `listen({host, port})`: with the socket `up` handed over when it is
 * the one for this port (Node's listen takes `handle` before host and port), else unchanged.
 */
export function listenOptions<T extends { host: string; port: number }>(address: T): T {
  if (!handed || handed.port !== address.port) return address;
  return { ...address, handle: handed.handle };
}
