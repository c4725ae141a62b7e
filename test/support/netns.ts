/**
 * Hosts as network namespaces for the mesh tests: each namespace runs its own `wireguard-go` and
 * roles, joined by veth pairs on a bridge with ULA underlay addresses (never IPv4 private ranges).
 * The test creates and removes everything itself; without root or /dev/net/tun it fails saying so.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type RunningProcess, repoRoot, run, spawnProcess } from "./tools.js";

export function requireMeshHost(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (network namespaces and WireGuard need CAP_NET_ADMIN)");
  if (!existsSync("/dev/net/tun")) missing.push("/dev/net/tun");
  for (const [bin, pkg] of [
    ["/usr/bin/wireguard-go", "wireguard-go"],
    ["/usr/bin/wg", "wireguard-tools"],
    ["/usr/bin/curl", "curl"],
    ["/usr/bin/skopeo", "skopeo"],
  ] as const) {
    if (!existsSync(bin)) missing.push(`${bin} (apt-get install -y ${pkg})`);
  }
  if (missing.length > 0) throw new Error(`the mesh test needs: ${missing.join("; ")}`);
}

/** Runs a command inside a namespace; resolves with its stdout. */
export async function nsRun(ns: string, ...args: string[]): Promise<string> {
  return (await run("ip", ["netns", "exec", ns, ...args])).stdout;
}

/**
 * A set of namespaces on one bridge (in the first one), each with an underlay address
 * `<prefix>N` (N from 1) and `/etc/netns/<ns>/hosts` naming `extraHosts`.
 */
export class NetnsLab {
  readonly names: string[];
  readonly procs: RunningProcess[] = [];
  private readonly bridge: string;

  constructor(
    readonly tag: string,
    hosts: string[],
    readonly prefix: string,
  ) {
    this.names = hosts.map((h) => `tm${h}${tag}`);
    this.bridge = `br${tag}`;
  }

  address(i: number): string {
    return `${this.prefix}${i + 1}`;
  }

  /** The veth end inside host i (i > 0); host 0 holds the bridge. */
  private link(i: number): string {
    return `v${i}${this.tag}`;
  }

  async create(extraHosts: Record<string, string> = {}): Promise<void> {
    for (const name of this.names) {
      await run("ip", ["netns", "add", name]);
      // A cut link must not take the host's underlay address with it when it comes back.
      for (const conf of ["all", "default"])
        await nsRun(name, "sysctl", "-qw", `net.ipv6.conf.${conf}.keep_addr_on_down=1`);
    }
    const [first] = this.names as [string];
    await nsRun(first, "ip", "link", "add", this.bridge, "type", "bridge");
    await nsRun(first, "ip", "link", "set", this.bridge, "up");
    await nsRun(first, "ip", "-6", "addr", "add", `${this.address(0)}/64`, "dev", this.bridge, "nodad");
    for (let i = 0; i < this.names.length; i++) {
      const name = this.names[i] as string;
      await nsRun(name, "ip", "link", "set", "lo", "up");
      const hosts = Object.entries(extraHosts).map(([host, addr]) => `${addr} ${host}`);
      await mkdir(`/etc/netns/${name}`, { recursive: true });
      await writeFile(
        `/etc/netns/${name}/hosts`,
        ["127.0.0.1 localhost", "::1 localhost", ...hosts, ""].join("\n"),
      );
      if (i === 0) continue;
      const port = `p${i}${this.tag}`;
      await run("ip", [
        "link",
        "add",
        this.link(i),
        "netns",
        name,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        first,
      ]);
      await nsRun(first, "ip", "link", "set", port, "master", this.bridge);
      await nsRun(first, "ip", "link", "set", port, "up");
      await nsRun(name, "ip", "-6", "addr", "add", `${this.address(i)}/64`, "dev", this.link(i), "nodad");
      await nsRun(name, "ip", "link", "set", this.link(i), "up");
    }
  }

  /** Cuts host i (i > 0) off the underlay at the bridge, as a pulled cable would. */
  async cut(i: number): Promise<void> {
    await nsRun(this.names[0] as string, "ip", "link", "set", `p${i}${this.tag}`, "down");
  }

  async restore(i: number): Promise<void> {
    await nsRun(this.names[0] as string, "ip", "link", "set", `p${i}${this.tag}`, "up");
  }

  /** Runs `tabbify <args>` (the compiled entry) inside host i. */
  tabbify(i: number, args: string[], env: NodeJS.ProcessEnv): RunningProcess {
    const entry = join(repoRoot, "dist", "src", "main", "tabbify.js");
    return this.spawn(i, [process.execPath, entry, ...args], env);
  }

  spawn(i: number, argv: string[], env: NodeJS.ProcessEnv = {}): RunningProcess {
    const p = spawnProcess("ip", ["netns", "exec", this.names[i] as string, ...argv], {
      env: { ...process.env, ...env },
    });
    this.procs.push(p);
    return p;
  }

  /** Stops every process, kills whatever is left in the namespaces, and removes them. */
  async destroy(): Promise<void> {
    for (const p of this.procs.reverse()) await p.stop(3000).catch(() => {});
    for (const name of this.names) {
      const pids = await run("ip", ["netns", "pids", name]).then(
        (r) => r.stdout.split(/\s+/).filter(Boolean),
        () => [],
      );
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      await run("ip", ["netns", "del", name]).catch(() => {});
      await rm(`/etc/netns/${name}`, { recursive: true, force: true });
    }
    // wireguard-go's UAPI sockets live in one directory shared by every namespace; one killed
    // before it could clean up leaves its socket behind. Ours end in the lab's tag.
    const uapi = "/var/run/wireguard";
    for (const entry of await readdir(uapi).catch(() => [] as string[])) {
      if (entry.endsWith(`${this.tag}.sock`)) await rm(join(uapi, entry), { force: true });
    }
  }
}

/**
 * A request loop inside a namespace: one GET every `everyMs`, each result a line
 * `<ms> <status> <body>` (status 0 when the request failed), so a test can count failures
 * between two moments.
 */
export function requestLoop(lab: NetnsLab, host: number, url: string, everyMs = 100): RequestLoop {
  const script = `
const http = require("node:http");
const url = process.argv[1];
const tick = () => {
  const t0 = Date.now();
  const req = http.get(url, { timeout: 3000, agent: false }, (res) => {
    let body = "";
    res.on("data", (c) => (body += c));
    res.on("end", () => console.log(t0 + " " + res.statusCode + " " + body.replace(/\\s+/g, " ").slice(0, 160)));
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", (e) => console.log(t0 + " 0 " + e.message));
};
setInterval(tick, ${everyMs});
`;
  const proc = lab.spawn(host, [process.execPath, "-e", script, url]);
  return {
    samples(sinceMs = 0) {
      return proc
        .output()
        .split("\n")
        .map((line) => /^(\d+) (\d+) (.*)$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ at: Number(m[1]), status: Number(m[2]), body: m[3] as string }))
        .filter((s) => s.at >= sinceMs);
    },
    stop: () => proc.stop(1000),
  };
}

export interface RequestLoop {
  samples(sinceMs?: number): { at: number; status: number; body: string }[];
  stop(): Promise<void>;
}

/** A dockerd of a host's own: containers on `--network host` share that namespace. */
export interface NamespaceDockerd {
  /** For `DOCKER_HOST`. */
  host: string;
  /** Removes its containers, stops it and its containerd. */
  stop(): Promise<void>;
}

/**
 * Starts dockerd inside host i, with its own roots under `dir` and `insecureRegistries` allowed
 * over plain HTTP. `ip netns exec` remounts /sys without the cgroup tree dockerd needs, so the
 * namespace's private mount table gets the host's cgroup mounts again first.
 */
export async function startNamespaceDockerd(
  lab: NetnsLab,
  i: number,
  dir: string,
  insecureRegistries: string[],
): Promise<NamespaceDockerd> {
  const host = `unix://${join(dir, "docker.sock")}`;
  const dockerd = [
    "dockerd",
    `--data-root=${join(dir, "root")}`,
    `--exec-root=${join(dir, "exec")}`,
    `--pidfile=${join(dir, "dockerd.pid")}`,
    `-H=${host}`,
    "--storage-driver=vfs",
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
    ...insecureRegistries.map((r) => `--insecure-registry=${r}`),
  ];
  const proc = lab.spawn(i, ["sh", "-c", `${await cgroupMountScript()} && exec "$@"`, "dockerd", ...dockerd]);
  const docker = (...args: string[]) => run("docker", args, { env: { ...process.env, DOCKER_HOST: host } });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (
      await docker("info").then(
        () => true,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline)
      throw new Error(`dockerd in ${lab.names[i]} did not answer:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    host,
    async stop() {
      const ids = (await docker("ps", "-aq").catch(() => ({ stdout: "" }))).stdout
        .split("\n")
        .filter(Boolean);
      if (ids.length > 0) await docker("rm", "-f", ...ids).catch(() => {});
      await proc.stop(15_000);
    },
  };
}

/**
 * Shell commands that mount, under a fresh /sys, the cgroup filesystems this host has (v1
 * controllers on a tmpfs, or one cgroup2), read from /proc/self/mounts in mount order.
 */
async function cgroupMountScript(): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  const mounts = (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((line) => line.split(" "))
    .filter(
      ([, target, type]) =>
        target?.startsWith("/sys/fs/cgroup") && ["tmpfs", "cgroup", "cgroup2"].includes(type ?? ""),
    );
  if (mounts.length === 0)
    throw new Error("this host has no cgroup filesystem under /sys/fs/cgroup for dockerd");
  return mounts
    .map(
      ([source, target, type, options]) =>
        `mkdir -p ${target} && mount -t ${type} -o ${options} ${source} ${target}`,
    )
    .join(" && ");
}
