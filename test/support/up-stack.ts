/**
 * `tabbify up` for tests: free ports for its four listeners, the spawn with them, the supervisor
 * key as the README's quick start reads it, and the example app pushed the way a newcomer does.
 */
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort, repoRoot, run, spawnTabbify } from "./tools.js";

export interface UpPorts {
  node: number;
  registry: number;
  auth: number;
  supervisor: number;
}

export async function freeUpPorts(): Promise<UpPorts> {
  return {
    node: await freePort(),
    registry: await freePort(),
    auth: await freePort(),
    supervisor: await freePort(),
  };
}

export function spawnUp(dataDir: string, ports: UpPorts, env: NodeJS.ProcessEnv = {}) {
  return spawnTabbify(
    [
      "up",
      "--data",
      dataDir,
      "--quiet",
      "--node-port",
      String(ports.node),
      "--registry-port",
      String(ports.registry),
      "--auth-port",
      String(ports.auth),
      "--supervisor-port",
      String(ports.supervisor),
    ],
    env,
  );
}

/** The local supervisor's API key as the quick start reads it: `cat <data>/supervisor/api.key`. */
export async function supervisorAuth(dataDir: string): Promise<Record<string, string>> {
  const key = (await readFile(join(dataDir, "supervisor", "api.key"), "utf8")).trim();
  return { authorization: `Bearer ${key}` };
}

/** Copies examples/hello-node into the data dir, pushes it to up's local store; its app uuid. */
export async function pushHelloNode(dataDir: string): Promise<string> {
  const app = join(dataDir, "hello-node");
  await cp(join(repoRoot, "examples", "hello-node"), app, { recursive: true });
  await run(process.execPath, [
    join(repoRoot, "dist", "src", "main", "tcli.js"),
    "push",
    app,
    "--store",
    "local",
    "--store-dir",
    join(dataDir, "artifacts"),
  ]);
  return /app_id = "([0-9a-f-]+)"/.exec(await readFile(join(app, "tabbify.lock"), "utf8"))![1]!;
}
