/**
 * Helpers for tests that use real components (dockerd, skopeo, s3rver, our own binary). A
 * component that is missing is installed when we can (root with apt-get), and otherwise the test
 * fails with the exact command to run: a test never passes by skipping what it needs.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, realpathSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { sleep } from "../../src/core/sleep.js";

const execFileAsync = promisify(execFile);

/** The repository root (this file compiles to dist/test/support/tools.js). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function onPath(name: string): string | null {
  const found = spawnSync("sh", ["-c", `command -v "$1"`, "sh", name], { encoding: "utf8" });
  const path = found.stdout.trim();
  return found.status === 0 && path !== "" ? path : null;
}

/** One `apt-get update` per test process is enough. */
let aptUpdated = false;

/**
 * Returns the path of a command, installing its Debian package first when it is missing and we
 * are root with apt-get. Otherwise throws, naming the exact command that would fix it.
 */
export function requireCommand(name: string, aptPackage: string): string {
  const found = onPath(name);
  if (found) return found;
  const canInstall = process.getuid?.() === 0 && onPath("apt-get") !== null;
  if (!canInstall) {
    throw new Error(
      `this test needs the "${name}" command: install it with \`sudo apt-get install -y ${aptPackage}\``,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  // dpkg takes a lock; wait for it rather than fail when another test file installs at once.
  const aptArgs = ["-o", "DPkg::Lock::Timeout=300"];
  if (!aptUpdated) {
    const update = spawnSync("apt-get", [...aptArgs, "update"], { env, stdio: "ignore" });
    if (update.status !== 0) throw new Error(`apt-get update failed while installing ${aptPackage}`);
    aptUpdated = true;
  }
  const install = spawnSync("apt-get", [...aptArgs, "install", "-y", "--no-install-recommends", aptPackage], {
    env,
    encoding: "utf8",
  });
  const path = onPath(name);
  if (install.status !== 0 || !path) {
    throw new Error(
      `installing ${aptPackage} for "${name}" failed (exit ${install.status}): ${install.stderr.slice(-500)}`,
    );
  }
  return path;
}

async function dockerAnswers(): Promise<boolean> {
  try {
    await execFileAsync("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure a Docker daemon answers, starting `dockerd` (vfs storage, no iptables, no bridge:
 * what runs inside a container without privileges for networking) when none does.
 */
export async function ensureDockerd(timeoutMs = 60_000): Promise<void> {
  requireCommand("docker", "docker.io");
  if (await dockerAnswers()) return;
  requireCommand("dockerd", "docker.io");
  const logPath = join(tmpdir(), "tabbify-dockerd.log");
  const log = openSync(logPath, "a");
  const daemon = spawn("dockerd", ["--storage-driver=vfs", "--iptables=false", "--bridge=none"], {
    detached: true,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  // The daemon outlives this test process on purpose: other test files share it.
  daemon.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await dockerAnswers()) return;
    // Another test file may have started a daemon at the same moment; ours then exits, theirs answers.
    await sleep(500);
  }
  throw new Error(`dockerd did not answer \`docker info\` within ${timeoutMs} ms; see ${logPath}`);
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the tests' name for it). */
export { freeLoopbackPort as freePort } from "../../src/core/net.js";
export { sleep };

/** A fresh directory under the system temp dir; `remove()` deletes it and everything inside. */
export async function tempDir(label = "tabbify-test"): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `${label}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true, maxRetries: 3 }) };
}

/** Polls a URL until it answers with any HTTP status; throws after timeoutMs. */
export async function waitForHttp(url: string, timeoutMs = 15_000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      return await fetch(url, { signal: AbortSignal.timeout(2_000) });
    } catch (err) {
      lastError = err;
      await sleep(100);
    }
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms: ${String(lastError)}`);
}

/** A running process with its output collected, so a test can wait for a line and show logs on failure. */
export interface RunningProcess {
  child: ChildProcess;
  /** Everything printed on stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the regex match of the first output line matching; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns a command and collects its output line by line. */
export function spawnProcess(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): RunningProcess {
  const child = spawn(command, args, {
    cwd: opts.cwd ?? repoRoot,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    text += chunk.toString();
    for (const w of waiters) w();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exitedValue: number | string | undefined;
  const exited = new Promise<number | string>((resolveExit) => {
    child.on("exit", (code, signal) => {
      exitedValue = code ?? signal ?? "unknown";
      for (const w of waiters) w();
      resolveExit(exitedValue);
    });
  });
  return {
    child,
    output: () => text,
    exited,
    waitForLine(pattern, timeoutMs = 20_000) {
      return new Promise((resolveLine, reject) => {
        const check = () => {
          const lines = text.split("\n");
          // The last piece is an unfinished line until the process has exited.
          if (exitedValue === undefined) lines.pop();
          for (const line of lines) {
            const m = line.match(pattern);
            if (m) return finish(() => resolveLine(m));
          }
          if (exitedValue !== undefined) {
            finish(() =>
              reject(new Error(`${command} exited (${exitedValue}) before printing ${pattern}:\n${text}`)),
            );
          }
        };
        const timer = setTimeout(
          () =>
            finish(() =>
              reject(new Error(`${command} did not print ${pattern} in ${timeoutMs} ms:\n${text}`)),
            ),
          timeoutMs,
        );
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 5_000) {
      if (exitedValue !== undefined) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs `node dist/src/main/tabbify.js <args>` from the repository root. Build first (tsc). */
export function spawnTabbify(args: string[], env: NodeJS.ProcessEnv = {}): RunningProcess {
  const entry = join(repoRoot, "dist", "src", "main", "tabbify.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npx tsc -p .\` first`);
  return spawnProcess(process.execPath, ["--enable-source-maps", entry, ...args], {
    env: { ...process.env, ...env },
  });
}

/** Runs a command to completion; rejects with its output when it exits non-zero. */
export async function run(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd ?? repoRoot,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveRun({ stdout, stderr });
      else {
        const err = new Error(
          `${command} ${args.join(" ")} failed (${code ?? signal}):\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`,
        ) as Error & { stdout: string; stderr: string; exitCode: number | null };
        err.stdout = stdout;
        err.stderr = stderr;
        err.exitCode = code;
        reject(err);
      }
    });
  });
}

export interface ScratchImageOptions {
  /**
   * The container's command as exec-form argv after `/bin/busybox`, e.g.
   * `["httpd", "-f", "-p", "8080"]` or `["echo", "hello"]`. Defaults to printing the tag.
   */
  command?: string[];
  /** Extra files to put in the image: path inside the image → content. */
  files?: Record<string, string>;
  /** Labels for the image. */
  labels?: Record<string, string>;
}

/**
 * Builds a `FROM scratch` image on the real dockerd containing Debian's static busybox as
 * `/bin/busybox` (and `/bin/sh`), so tests have a tiny runnable image without any registry.
 */
export async function buildScratchImage(tag: string, opts: ScratchImageOptions = {}): Promise<void> {
  requireCommand("busybox", "busybox-static");
  await ensureDockerd();
  const busybox = realpathSync("/bin/busybox");
  const check = spawnSync("file", ["-b", busybox], { encoding: "utf8" });
  if (check.status === 0 && /dynamically linked/.test(check.stdout)) {
    throw new Error(
      `${busybox} is dynamically linked: install the static one with apt-get install -y busybox-static`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "tabbify-image-"));
  try {
    copyFileSync(busybox, join(dir, "busybox"));
    const lines = ["FROM scratch", "COPY busybox /bin/busybox"];
    let n = 0;
    for (const [path, content] of Object.entries(opts.files ?? {})) {
      const name = `file-${n++}`;
      await writeFile(join(dir, name), content);
      lines.push(`COPY ${name} ${path}`);
    }
    for (const [k, v] of Object.entries(opts.labels ?? {}))
      lines.push(`LABEL ${JSON.stringify(k)}=${JSON.stringify(v)}`);
    const command = opts.command ?? ["echo", `hello from ${tag}`];
    lines.push(`ENTRYPOINT ["/bin/busybox"]`, `CMD ${JSON.stringify(command)}`);
    await writeFile(join(dir, "Dockerfile"), `${lines.join("\n")}\n`);
    // The classic builder needs no buildx plugin, which Debian's docker.io does not ship.
    await run("docker", ["build", "-q", "-t", tag, dir], {
      env: { ...process.env, DOCKER_BUILDKIT: "0" },
      timeoutMs: 180_000,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes a config for Debian's `docker-registry` (the CNCF reference registry): filesystem
 * storage under `rootDir`, deletes enabled, plain HTTP on 127.0.0.1:`port`, quiet logs.
 * Returns the config's path for `docker-registry serve <path>`.
 */
export async function writeDockerRegistryConfig(dir: string, rootDir: string, port: number): Promise<string> {
  const config = join(dir, `docker-registry-${port}.yml`);
  await writeFile(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: error",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${rootDir}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  return config;
}
