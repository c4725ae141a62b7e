/**
 * A real Postgres server for tests, started by the test itself: Debian's `postgresql` binaries,
 * `initdb` + `pg_ctl` in a temp dir as the unprivileged `postgres` user (when we are root), TCP on
 * 127.0.0.1 at a free port with a random password, its unix socket in the temp dir. Stopped and
 * removed by `stop()`.
 *
 *   const pg = await startPostgres();       after(() => pg.stop());
 *   const url = await pg.createDatabase();  // a fresh, empty database per store under test
 *
 * or, with one server per test process stopped at exit: `const url = await freshDatabaseUrl();`
 */
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const execFileAsync = promisify(execFile);

export interface PostgresServer {
  /** The `postgres` database, as the superuser `tabbify` (password included). */
  adminUrl: string;
  port: number;
  /** The temp dir holding the cluster, its socket and its log; removed by stop(). */
  dir: string;
  /** Creates an empty database and returns its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
  /** For `process.on("exit")`: an immediate shutdown, then the temp dir removed. */
  stopSync(): void;
}

/** The newest installed server's bin dir, or a failure naming the package to install. */
export function postgresBinDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter(
          (v) => existsSync(join(root, v, "bin", "pg_ctl")) && existsSync(join(root, v, "bin", "initdb")),
        )
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error(
      "this test needs a real Postgres server (initdb, pg_ctl): install it with `apt-get install -y postgresql`",
    );
  }
  return join(root, newest, "bin");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root: as root, commands run as the `postgres` system user. */
function runAs(): { uid: number; gid: number; prefix: string[] } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error(
      "running as root, the Postgres test server needs the unprivileged `postgres` user: `apt-get install -y postgresql` creates it",
    );
  }
  return {
    uid: Number(uid.stdout.trim()),
    gid: Number(gid.stdout.trim()),
    prefix: ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"],
  };
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), "tabbify-pg-"));
  const data = join(dir, "data");
  const password = randomBytes(16).toString("hex");
  const pwfile = join(dir, "pwfile");
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (user) {
    chownSync(dir, user.uid, user.gid);
    chownSync(pwfile, user.uid, user.gid);
  }
  const run = async (cmd: string, args: string[]) => {
    const argv = [...(user?.prefix ?? []), join(bin, cmd), ...args];
    try {
      return await execFileAsync(argv[0] as string, argv.slice(1), { cwd: dir, timeout: 120_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${cmd} failed: ${(e.stderr ?? e.message).slice(-800)}`);
    }
  };
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const stopImmediately = () => {
    const argv = [...(user?.prefix ?? []), join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"];
    spawnSync(argv[0] as string, argv.slice(1), { stdio: "ignore" });
    cleanup();
  };
  try {
    await run("initdb", [
      "-D",
      data,
      "-U",
      "tabbify",
      `--pwfile=${pwfile}`,
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const serverOptions = [
        "-c listen_addresses=127.0.0.1",
        `-p ${port}`,
        `-k ${dir}`,
        "-c shared_buffers=16MB",
        "-c max_connections=60",
      ].join(" ");
      try {
        await run("pg_ctl", [
          "-D",
          data,
          "-l",
          join(dir, "server.log"),
          "-w",
          "-t",
          "60",
          "-o",
          serverOptions,
          "start",
        ]);
        break;
      } catch (err) {
        // Another process may have taken the port between the probe and the start.
        if (attempt >= 3) {
          const log = existsSync(join(dir, "server.log"))
            ? readFileSync(join(dir, "server.log"), "utf8")
            : "";
          throw new Error(`${(err as Error).message}\n${log.slice(-800)}`);
        }
      }
    }
    const adminUrl = `postgres://tabbify:${password}@127.0.0.1:${port}/postgres`;
    let stopped = false;
    return {
      adminUrl,
      port,
      dir,
      async createDatabase() {
        const name = `t_${randomBytes(6).toString("hex")}`;
        const client = new pg.Client({ connectionString: adminUrl });
        await client.connect();
        try {
          await client.query(`create database ${name}`);
        } finally {
          await client.end();
        }
        return `postgres://tabbify:${password}@127.0.0.1:${port}/${name}`;
      },
      stopSync() {
        if (stopped) return;
        stopped = true;
        stopImmediately();
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          await run("pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "30", "stop"]);
        } finally {
          cleanup();
        }
      },
    };
  } catch (err) {
    // A half-started server must not outlive the test.
    stopImmediately();
    throw err;
  }
}

let shared: Promise<PostgresServer> | undefined;

/**
 * A fresh, empty database on one server shared by the whole test process: started on first use,
 * stopped (synchronously) when the process exits. For test files that only need URLs.
 */
export async function freshDatabaseUrl(): Promise<string> {
  if (!shared) {
    shared = startPostgres();
    shared.then(
      (server) => process.once("exit", () => server.stopSync()),
      () => {},
    );
  }
  return (await shared).createDatabase();
}
