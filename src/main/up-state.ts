/**
 * What a running `tabbify up` leaves in its data dir for `tabbify down` and for a second `up`:
 * `<data>/up.json` with its pid and the roles' URLs (no secrets). And the port check a second
 * `up` does before starting anything, so it fails in one line instead of crashing half-started.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";

export interface UpState {
  pid: number;
  data_dir: string;
  node_url: string;
  supervisor_url: string;
  started_at: string;
}

export function upStatePath(dataDir: string): string {
  return join(dataDir, "up.json");
}

export async function writeUpState(state: UpState): Promise<void> {
  await writeFile(upStatePath(state.data_dir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

export async function readUpState(dataDir: string): Promise<UpState | undefined> {
  try {
    return JSON.parse(await readFile(upStatePath(dataDir), "utf8")) as UpState;
  } catch (err) {
    if (isErrno(err, "ENOENT") || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

export async function clearUpState(dataDir: string, pid: number): Promise<void> {
  if ((await readUpState(dataDir))?.pid === pid) await rm(upStatePath(dataDir), { force: true });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, "EPERM");
  }
}

/** Resolves when `host:port` can be listened on; otherwise says which flag's port and who holds it. */
async function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", (err) =>
      isErrno(err, "EADDRINUSE") || isErrno(err, "EACCES") ? done(false) : fail(err),
    );
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(true)));
  });
}

/** Fails with one line when any of `ports` (flag → port) is taken, naming a running `up` if it is one. */
export async function assertPortsFree(
  host: string,
  ports: Record<string, string>,
  dataDir: string,
): Promise<void> {
  for (const [flag, port] of Object.entries(ports)) {
    if (await portFree(host, Number(port))) continue;
    const up = await readUpState(dataDir);
    const holder =
      up && processAlive(up.pid)
        ? `tabbify up (pid ${up.pid}, data ${up.data_dir}) is already running: use it, or stop it with \`tabbify down --data ${up.data_dir}\``
        : `another process holds it (\`ss -ltnp 'sport = :${port}'\` names it): free it or pass --${flag}`;
    throw new TabbifyError("PORT_IN_USE", `port ${port} (--${flag}) on ${host} is in use; ${holder}`);
  }
}
