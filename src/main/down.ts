/**
 * `tabbify down [--data DIR]`: stops everything a `tabbify up` of that data dir started: first each
 * app through its supervisor (runner, workload and container go; the record stays, stopped, so
 * `tcli start` brings an app back), then the control plane (`up` itself, which stops its roles).
 * Runners of that supervisor the API did not stop are then killed from their records.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { SupervisorApi, type SupervisorAppRow, supervisorRefusal } from "../supervisor/client.js";
import { type OptionSpec, optionsHelp, parseOptions } from "./flags.js";
import { processAlive, readUpState } from "./up-state.js";

const downOptions: OptionSpec[] = [
  { flag: "data", env: "TABBIFY_DATA_DIR", default: ".tabbify", help: "the data dir `tabbify up` was given" },
];

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, downOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify down [--data DIR]", downOptions));
    return 0;
  }
  const dataDir = resolve(opts.values.data!);
  const say = (line: string) => process.stderr.write(`tabbify down: ${line}\n`);
  const up = await readUpState(dataDir);
  const upRunning = up !== undefined && processAlive(up.pid);
  const supervisorDir = join(dataDir, "supervisor");
  if (upRunning) {
    const key = env.SUPERVISOR_API_KEY || (await readKey(join(supervisorDir, "api.key")));
    const stopped = await stopApps(up.supervisor_url, key, say);
    say(`stopped ${stopped} app${stopped === 1 ? "" : "s"} through the supervisor`);
    process.kill(up.pid, "SIGTERM");
    const deadline = Date.now() + 30_000;
    while (processAlive(up.pid) && Date.now() < deadline) await sleep(100);
    if (processAlive(up.pid))
      throw new TabbifyError("DOWN_FAILED", `tabbify up (pid ${up.pid}) did not stop within 30 s`);
    say(`stopped the control plane (tabbify up, pid ${up.pid})`);
  } else {
    say(`no tabbify up is running for ${dataDir}`);
  }
  const killed = await killRecordedRunners(join(supervisorDir, "runners"));
  if (killed > 0) say(`killed ${killed} runner${killed === 1 ? "" : "s"} left from the records`);
  process.stdout.write(`Tabbify is down: nothing of ${dataDir} is running.\n`);
  return 0;
}

async function readKey(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

async function stopApps(
  supervisorUrl: string,
  key: string | undefined,
  say: (l: string) => void,
): Promise<number> {
  const supervisor = new SupervisorApi({ baseUrl: supervisorUrl, authToken: key });
  let apps: SupervisorAppRow[];
  try {
    apps = (await supervisor.list({ timeoutMs: 10_000 })).apps ?? [];
  } catch (err) {
    const why = supervisorRefusal(err) ? `HTTP ${supervisorRefusal(err)?.status}` : (err as Error).message;
    say(`the supervisor did not list its apps (${why}); runners are stopped from their records`);
    return 0;
  }
  let stopped = 0;
  for (const app of apps.filter((a) => a.state !== "stopped")) {
    if (typeof app.uuid !== "string") continue;
    try {
      await supervisor.appOp(app.uuid, "stop", { timeoutMs: 60_000 });
      stopped += 1;
    } catch (err) {
      const refused = supervisorRefusal(err);
      say(`could not stop ${app.uuid} (${refused ? `HTTP ${refused.status}` : (err as Error).message})`);
    }
  }
  return stopped;
}

/** SIGTERM then SIGKILL to each recorded runner's process group and workload still alive. */
async function killRecordedRunners(dir: string): Promise<number> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".json"));
  } catch (err) {
    if (isErrno(err, "ENOENT")) return 0;
    throw err;
  }
  const pids: number[] = [];
  for (const name of names) {
    try {
      const record = JSON.parse(await readFile(join(dir, name), "utf8")) as {
        pid?: unknown;
        workload_pid?: unknown;
      };
      for (const pid of [record.pid, record.workload_pid])
        if (typeof pid === "number" && pid > 1 && processAlive(pid)) pids.push(pid);
    } catch {
      // Not a record (a temp file mid-rename): nothing to stop.
    }
  }
  const signalGroup = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        // Already gone.
      }
    }
  };
  for (const pid of pids) signalGroup(pid, "SIGTERM");
  const deadline = Date.now() + 5_000;
  while (pids.some(processAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(processAlive)) signalGroup(pid, "SIGKILL");
  return pids.length;
}
