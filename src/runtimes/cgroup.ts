/**
 * Memory and CPU limits for process workloads, through a cgroup of the workload's own when this
 * host lets us create one (cgroup v2 with the memory controller delegated to our cgroup, or the
 * v1 `memory` and `cpu` hierarchies), else through `prlimit --as` (non-Node programs) or Node's
 * heap flag (Node programs, whose address-space reservations make RLIMIT_AS unusable). See
 * docs/DECISIONS.md "Resource limits".
 *
 * The workload is moved into its cgroup right after it is spawned: the few pages it touches
 * before that are charged to the runner's cgroup, which is harmless.
 */
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { pathExists } from "../core/exists.js";

export interface ProcessLimits {
  memoryMb?: number;
  vcpus?: number;
}

/** Why a workload ended when the host, not the app, decided it: over memory, CPU or fuel. */
export type LimitReason = "oom" | "cpu" | "fuel";

export interface WorkloadCgroup {
  readonly dirs: string[];
  /** True once the kernel OOM-killed a process of this cgroup. */
  oomKilled(): Promise<boolean>;
  /** True once the kernel held this cgroup at its CPU quota (`vcpus`) at least once. */
  throttled(): Promise<boolean>;
  remove(): Promise<void>;
}

const CPU_PERIOD_US = 100_000;
const ROOT = "/sys/fs/cgroup";

interface Hierarchies {
  v2?: string;
  memoryV1?: string;
  cpuV1?: string;
}

let probed: Promise<Hierarchies> | undefined;

/** Where this process's cgroups are, per hierarchy we can write limits in. */
function hierarchies(): Promise<Hierarchies> {
  probed ??= (async () => {
    const lines = (await readFile("/proc/self/cgroup", "utf8").catch(() => "")).split("\n");
    const found: Hierarchies = {};
    for (const line of lines) {
      const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
      if (controllers === undefined || path === undefined) continue;
      if (controllers === "") {
        for (const mount of [ROOT, join(ROOT, "unified")]) {
          const dir = join(mount, path);
          const enabled = await readFile(join(dir, "cgroup.subtree_control"), "utf8").catch(() => "");
          if (enabled.split(/\s+/).includes("memory")) found.v2 = dir;
        }
      }
      const names = controllers.split(",");
      // /proc/self/cgroup names hierarchies whether or not they are mounted here (a fresh /sys,
      // as `ip netns exec` gives, has none): only a directory holding the controller's own
      // files is one.
      const memory = join(ROOT, "memory", path);
      if (names.includes("memory") && (await pathExists(join(memory, "memory.limit_in_bytes"))))
        found.memoryV1 = memory;
      const cpu = join(ROOT, names.includes("cpuacct") ? "cpu,cpuacct" : "cpu", path);
      if (names.includes("cpu") && (await pathExists(join(cpu, "cpu.cfs_quota_us")))) found.cpuV1 = cpu;
    }
    return found;
  })();
  return probed;
}

/**
 * Creates a cgroup named `name` with `limits` and moves `pid` into it; undefined when this host
 * gives us no writable cgroup (the caller then falls back, see `fallbackLimits`).
 */
export async function limitInCgroup(
  pid: number,
  name: string,
  limits: ProcessLimits,
): Promise<WorkloadCgroup | undefined> {
  const h = await hierarchies();
  const leaf = `tabbify-${name}`;
  const memoryBytes = limits.memoryMb ? Math.floor(limits.memoryMb * 1024 * 1024) : undefined;
  const quota = limits.vcpus ? Math.round(limits.vcpus * CPU_PERIOD_US) : undefined;
  try {
    if (h.v2) {
      const dir = join(h.v2, leaf);
      await makeLeaf(dir);
      if (memoryBytes) {
        await writeFile(join(dir, "memory.max"), String(memoryBytes));
        await writeFile(join(dir, "memory.swap.max"), "0").catch(() => {});
      }
      if (quota) await writeFile(join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_US}`).catch(() => {});
      await writeFile(join(dir, "cgroup.procs"), String(pid));
      return {
        dirs: [dir],
        oomKilled: async () => counter(await readFile(join(dir, "memory.events"), "utf8"), "oom_kill") > 0,
        throttled: async () =>
          quota !== undefined &&
          counter(await readFile(join(dir, "cpu.stat"), "utf8").catch(() => ""), "nr_throttled") > 0,
        remove: () => removeDirs([dir]),
      };
    }
    if (!h.memoryV1 && !h.cpuV1) return undefined;
    const dirs: string[] = [];
    let memoryDir: string | undefined;
    let cpuDir: string | undefined;
    if (h.memoryV1 && memoryBytes) {
      memoryDir = join(h.memoryV1, leaf);
      await makeLeaf(memoryDir);
      await writeFile(join(memoryDir, "memory.limit_in_bytes"), String(memoryBytes));
      // Without swap accounting this file is absent; the limit then covers RAM only.
      await writeFile(join(memoryDir, "memory.memsw.limit_in_bytes"), String(memoryBytes)).catch(() => {});
      await writeFile(join(memoryDir, "cgroup.procs"), String(pid));
      dirs.push(memoryDir);
    }
    if (h.cpuV1 && quota) {
      cpuDir = join(h.cpuV1, leaf);
      await makeLeaf(cpuDir);
      await writeFile(join(cpuDir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      await writeFile(join(cpuDir, "cpu.cfs_quota_us"), String(quota));
      await writeFile(join(cpuDir, "cgroup.procs"), String(pid));
      dirs.push(cpuDir);
    }
    if (memoryBytes && !memoryDir) return undefined;
    return {
      dirs,
      oomKilled: async () =>
        memoryDir !== undefined &&
        counter(await readFile(join(memoryDir, "memory.oom_control"), "utf8").catch(() => ""), "oom_kill") >
          0,
      throttled: async () =>
        cpuDir !== undefined &&
        counter(await readFile(join(cpuDir, "cpu.stat"), "utf8").catch(() => ""), "nr_throttled") > 0,
      remove: () => removeDirs(dirs),
    };
  } catch {
    return undefined;
  }
}

/** True when this host can hold a process workload to its memory limit with a cgroup. */
export async function cgroupLimitsAvailable(): Promise<boolean> {
  const h = await hierarchies();
  return h.v2 !== undefined || h.memoryV1 !== undefined;
}

/**
 * Without a cgroup: Node programs get `--max-old-space-size` through NODE_OPTIONS (V8 reserves far
 * more address space than it uses, so RLIMIT_AS would stop Node from starting at all); any other
 * program runs under `prlimit --as`. CPU is not capped without a cgroup.
 */
export function fallbackLimits(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  limits: ProcessLimits,
): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  if (!limits.memoryMb) return { file, args, env };
  const mb = Math.floor(limits.memoryMb);
  if (basename(file) === "node") {
    const heap = `--max-old-space-size=${mb}`;
    return { file, args, env: { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ""} ${heap}`.trim() } };
  }
  return { file: "prlimit", args: [`--as=${mb * 1024 * 1024}`, "--", file, ...args], env };
}

function counter(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

async function removeDirs(dirs: string[]): Promise<void> {
  // rmdir fails while a process is still inside (a killed runner's orphan); it is then left.
  for (const dir of dirs) await rmdir(dir).catch(() => {});
}

/**
 * The workload's cgroup, under ours (which exists). Never `recursive`: a cgroup filesystem
 * answers ENOENT to a mkdir it refuses, which Node's recursive mkdir takes for a missing parent
 * and retries forever.
 */
async function makeLeaf(dir: string): Promise<void> {
  await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
}
