import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { freePort, requireCommand, sleep } from "./tools.js";

/**
 * A private OpenSSH server for tests: its own host key, authorized_keys and config in `dir`, on a
 * random loopback port, serving git over ssh as the current user (git-upload-pack from PATH).
 * Plus a client ssh dir laid out as the node wants it (`id_ed25519`, and `known_hosts` on request).
 */
export interface TestSshd {
  port: number;
  user: string;
  /** The line to put in a known_hosts for this server (`[127.0.0.1]:port ssh-ed25519 …`). */
  knownHostsLine: string;
  /** Everything sshd printed (it runs with -e). */
  log(): string;
  stop(): Promise<void>;
}

function keygen(file: string): void {
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "tabbify-test", "-f", file]);
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}

/** A client key in `clientDir/id_ed25519` (0600), as the node's `--ssh-dir` holds it. */
export function makeClientKey(clientDir: string): string {
  mkdirSync(clientDir, { recursive: true, mode: 0o700 });
  keygen(join(clientDir, "id_ed25519"));
  return readFileSync(join(clientDir, "id_ed25519.pub"), "utf8");
}

export async function startSshd(dir: string, authorizedKey: string): Promise<TestSshd> {
  const sshd = "/usr/sbin/sshd";
  requireCommand("ssh", "openssh-client");
  try {
    requireCommand("sshd", "openssh-server");
  } catch {
    // /usr/sbin may not be on PATH: the package is what matters.
    if (spawnSync(sshd, ["-V"]).error) requireCommand("/usr/sbin/sshd", "openssh-server");
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  keygen(join(dir, "host_ed25519"));
  writeFileSync(join(dir, "authorized_keys"), authorizedKey, { mode: 0o600 });
  const port = await freePort();
  const user = userInfo().username;
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_ed25519")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "StrictModes no",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      "UsePAM no",
      "AllowAgentForwarding no",
      "AllowTcpForwarding no",
      "X11Forwarding no",
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(sshd, ["-D", "-e", "-f", join(dir, "sshd_config")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (c: Buffer) => {
    if (log.length < 1_000_000) log += c.toString();
  });
  const deadline = Date.now() + 10_000;
  while (!log.includes("Server listening")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      throw new Error(`sshd did not start: ${log}`);
    }
    await sleep(50);
  }
  const hostPub = readFileSync(join(dir, "host_ed25519.pub"), "utf8")
    .trim()
    .split(/\s+/)
    .slice(0, 2)
    .join(" ");
  return {
    port,
    user,
    knownHostsLine: `[127.0.0.1]:${port} ${hostPub}\n`,
    log: () => log,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
