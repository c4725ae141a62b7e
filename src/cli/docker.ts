import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { TabbifyError } from "../core/errors.js";

/** What `tcli push` needs of docker: build an image, and save it gzipped to a file. */
export interface DockerClient {
  build(argv: string[], cwd: string): Promise<void>;
  /** `docker save <tag> | gzip > dest`, streamed; returns the gzipped size. */
  saveGzipped(argv: string[], dest: string, onBytes?: (n: number) => void): Promise<number>;
}

/** How much of docker's stderr to quote in an error: the end is where it says what went wrong. */
const STDERR_TAIL = 1500;

/**
 * Runs the real `docker` CLI found on PATH. Build output goes to our stderr (stdout stays for
 * the summary). Without the buildx plugin, `docker build` refuses to run under BuildKit, so
 * then the classic builder is used unless the user chose with DOCKER_BUILDKIT.
 */
export class DockerCli implements DockerClient {
  private buildEnv: Promise<NodeJS.ProcessEnv> | undefined;

  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly output: NodeJS.WritableStream = process.stderr,
  ) {}

  async build(argv: string[], cwd: string): Promise<void> {
    this.buildEnv ??= this.chooseBuilder();
    const env = await this.buildEnv;
    await this.run(argv, { cwd, env, stdout: "forward" });
  }

  async saveGzipped(argv: string[], dest: string, onBytes?: (n: number) => void): Promise<number> {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    const stderr = collectTail(child.stderr);
    const exited = waitForExit(child);
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        onBytes?.(chunk.length);
        done(null, chunk);
      },
    });
    try {
      await Promise.all([pipeline(child.stdout, counter, createGzip(), createWriteStream(dest)), exited]);
    } catch (err) {
      child.kill("SIGKILL");
      throw dockerError(argv, err, stderr());
    }
    return (await stat(dest)).size;
  }

  private async chooseBuilder(): Promise<NodeJS.ProcessEnv> {
    if (this.env.DOCKER_BUILDKIT !== undefined) return this.env;
    try {
      await this.run(["docker", "buildx", "version"], { env: this.env, stdout: "ignore" });
      return this.env;
    } catch {
      return { ...this.env, DOCKER_BUILDKIT: "0" };
    }
  }

  private async run(
    argv: string[],
    opts: { cwd?: string; env: NodeJS.ProcessEnv; stdout: "forward" | "ignore" },
  ): Promise<void> {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    if (opts.stdout === "forward") {
      child.stdout.pipe(this.output, { end: false });
      child.stderr.pipe(this.output, { end: false });
    } else {
      child.stdout.resume();
    }
    const stderr = collectTail(child.stderr);
    try {
      await waitForExit(child);
    } catch (err) {
      throw dockerError(argv, err, stderr());
    }
  }
}

function collectTail(stream: NodeJS.ReadableStream): () => string {
  let tail = "";
  stream.on("data", (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-STDERR_TAIL);
  });
  return () => tail.trim();
}

class ExitError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly signal: string | null,
  ) {
    super(`exit ${exitCode ?? signal}`);
  }
}

function waitForExit(child: ReturnType<typeof spawn>): Promise<void> {
  return new Promise((resolveExit, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolveExit();
      else reject(new ExitError(code, signal ?? null));
    });
  });
}

function dockerError(argv: string[], err: unknown, stderr: string): TabbifyError {
  const command = argv.slice(0, 2).join(" ");
  if ((err as NodeJS.ErrnoException).code === "ENOENT") {
    return new TabbifyError(
      "DOCKER_UNAVAILABLE",
      `${command}: the docker CLI is not on PATH; install Docker (apt-get install docker.io) or drop [build] from manifest.toml`,
    );
  }
  if (/Cannot connect to the Docker daemon|Is the docker daemon running/i.test(stderr)) {
    return new TabbifyError(
      "DOCKER_UNAVAILABLE",
      `${command}: no Docker daemon answers; start it (\`sudo systemctl start docker\` or \`dockerd &\`) and push again`,
    );
  }
  const how = err instanceof ExitError ? `exited ${err.exitCode ?? err.signal}` : String(err);
  const last = stderr.split("\n").slice(-5).join("\n");
  return new TabbifyError("DOCKER_FAILED", `${command} failed (${how})${last ? `:\n${last}` : ""}`);
}
