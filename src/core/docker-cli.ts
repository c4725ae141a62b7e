import { execFile } from "node:child_process";

/**
 * The one way to run a short `docker` CLI command and read its output (streaming commands such
 * as `docker run` or `docker build` spawn it themselves). A failure rejects with an Error whose
 * message is `docker <subcommand> failed: ` and the last lines of docker's stderr (or of the
 * spawn error: ENOENT when the CLI is missing, a timeout).
 */
export function dockerCli(
  args: string[],
  opts: {
    timeoutMs: number;
    /** Environment of the CLI (e.g. a DOCKER_CONFIG of its own); defaults to ours. */
    env?: NodeJS.ProcessEnv;
    maxBufferBytes?: number;
  },
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      "docker",
      args,
      {
        timeout: opts.timeoutMs,
        maxBuffer: opts.maxBufferBytes ?? 16 * 1024 * 1024,
        ...(opts.env ? { env: opts.env } : {}),
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const detail = (stderr || err.message).trim().split("\n").slice(-5).join("\n");
        reject(new Error(`docker ${args[0] ?? ""} failed: ${detail}`));
      },
    );
  });
}

/** True when the docker daemon answers (`docker version` reaches the server) within the time. */
export async function dockerDaemonAnswers(timeoutMs: number): Promise<boolean> {
  try {
    await dockerCli(["version", "--format", "{{.Server.Version}}"], { timeoutMs });
    return true;
  } catch {
    return false;
  }
}
