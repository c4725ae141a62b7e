import { execFile } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A real git repository for tests: a bare repo under `<projectRoot>/<owner>/<name>.git` (the
 * layout `git http-backend` serves with GIT_PROJECT_ROOT=projectRoot) and a work tree whose
 * commits are pushed to it.
 */
export interface GitRepo {
  owner: string;
  name: string;
  /** `owner/name`. */
  fullName: string;
  projectRoot: string;
  bareDir: string;
  workDir: string;
  /**
   * Writes `files` (path → content; null deletes), commits everything and pushes to `branch`
   * (default main). Returns the new commit's 40-hex sha.
   */
  commit(files: Record<string, string | null>, message?: string, branch?: string): Promise<string>;
}

/** git without the user's config, so tests do not depend on the machine's ~/.gitconfig. */
export const gitEnv: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0",
  GIT_AUTHOR_NAME: "Tabbify Test",
  GIT_AUTHOR_EMAIL: "test@tabbify.invalid",
  GIT_COMMITTER_NAME: "Tabbify Test",
  GIT_COMMITTER_EMAIL: "test@tabbify.invalid",
};

export async function git(args: string[], cwd?: string): Promise<string> {
  const { stdout } = await run("git", args, { cwd, env: gitEnv, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

export async function createGitRepo(projectRoot: string, owner: string, name: string): Promise<GitRepo> {
  const bareDir = join(projectRoot, owner, `${name}.git`);
  const workDir = join(projectRoot, "..", "work", owner, name);
  await mkdir(dirname(bareDir), { recursive: true });
  await mkdir(workDir, { recursive: true });
  await git(["init", "--quiet", "--bare", "--initial-branch=main", bareDir]);
  await git(["init", "--quiet", "--initial-branch=main", workDir]);
  await git(["remote", "add", "origin", bareDir], workDir);

  return {
    owner,
    name,
    fullName: `${owner}/${name}`,
    projectRoot,
    bareDir,
    workDir,
    async commit(files, message = "commit", branch = "main") {
      for (const [path, content] of Object.entries(files)) {
        const target = join(workDir, path);
        if (content === null) {
          await rm(target, { force: true });
        } else {
          await mkdir(dirname(target), { recursive: true });
          await writeFile(target, content);
        }
      }
      await git(["add", "-A"], workDir);
      await git(["commit", "--quiet", "--allow-empty", "-m", message], workDir);
      await git(["push", "--quiet", "origin", `HEAD:refs/heads/${branch}`], workDir);
      return (await git(["rev-parse", "HEAD"], workDir)).trim();
    },
  };
}

/**
 * The Dockerfile of the git tests' small app: static busybox serving `www/` on HOST:PORT, with the
 * greeting as a label so every version's image differs.
 */
export const busyboxPageDockerfile = (greeting: string): string =>
  [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    "COPY www /www",
    `ENTRYPOINT ["/bin/busybox", "sh", "-c", "/bin/busybox httpd -f -p \${HOST}:\${PORT} -h /www & trap 'kill $!; exit 0' TERM; wait"]`,
    `LABEL greeting="${greeting}"`,
    "",
  ].join("\n");
