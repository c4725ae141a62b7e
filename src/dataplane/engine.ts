import type { ChildProcess } from "node:child_process";

/** One app the roster knows: its lowercased uuid and the address its runner serves on. */
export interface EdgeRoute {
  uuid: string;
  /** Bare IPv4 or IPv6 host of `<app address>`. */
  host: string;
}

/** What every engine's config is rendered from. */
export interface EdgeConfigInput {
  /** The public listener the node was asked for. */
  listenHost: string;
  listenPort: number;
  /** The node's own API, on loopback: everything that is not a roster app goes here. */
  nodeApi: { host: string; port: number };
  routes: readonly EdgeRoute[];
  appPort: number;
  /** Absolute directory holding the config, pid, logs and temp files (0700). */
  edgeDir: string;
  /** Worker processes (nginx) or threads (haproxy, caddy's GOMAXPROCS). */
  workers: number;
  /** Set when the node runs as root: workers drop to this user where the engine can. */
  workerUser?: { user: string; group: string };
  /** Served at `/.tabbify-edge` to loopback callers, so the node sees which config is live. */
  generation: number;
}

export type EngineName = "nginx" | "caddy" | "haproxy";

/**
 * What differs between the proxies the node can run as its edge (edge.ts does the rest: the
 * supervised child, batching, validation before a config goes live, restarts).
 */
export interface EdgeEngine {
  readonly name: EngineName;
  /** The executable on PATH, and the Debian package that has it. */
  readonly binary: string;
  readonly aptPackage: string;
  /** The live config's file name in the edge dir. */
  readonly configFile: string;
  /** Where the engine writes its master pid (for the orphan a killed node leaves). */
  readonly pidFile: string;
  render(input: EdgeConfigInput): string;
  /** argv that checks a candidate config and exits non-zero when the engine refuses it. */
  validateArgs(candidate: string, dir: string): string[];
  /** argv that runs the engine in the foreground on the live config. */
  runArgs(config: string, dir: string): string[];
  /** Extra environment for the child. */
  env(dir: string, workers: number): Record<string, string>;
  /** Makes the running engine take up the live config, gracefully. */
  reload(child: ChildProcess, dir: string): Promise<void>;
  /** The graceful stop signal (in-flight requests finish). */
  readonly stopSignal: NodeJS.Signals;
}
