/**
 * A whole `tabbify up` for the dashboard's browser tests, and an app pushed to it with git the way
 * the README's quick start does: a busybox page that also prints a numbered line every second
 * (what the log tail follows). Real git, dockerd and busybox.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { git, gitEnv } from "./git-repo.js";
import { ensureDockerd, requireCommand, tempDir } from "./tools.js";
import { freeUpPorts, spawnUp, type UpPorts } from "./up-stack.js";

export interface DashboardStack {
  url: string;
  nodeKey: string;
  ports: UpPorts;
  /** Writes the app's files at `greeting` (or a Dockerfile that cannot build), commits, starts a push. */
  push(name: string, greeting: string, opts?: { broken?: boolean }): Promise<PushRun>;
  close(): Promise<void>;
}

export interface PushRun {
  /** Resolves when git push returns (the node streams the deploy into it). */
  done: Promise<{ code: number | null; out: string }>;
}

const tickingPage = (greeting: string): string =>
  [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    "COPY www /www",
    `ENTRYPOINT ["/bin/busybox", "sh", "-c", "/bin/busybox httpd -f -p \${HOST}:\${PORT} -h /www & trap 'kill $!; exit 0' TERM; i=0; while true; do i=$((i+1)); echo dashboard-tick-$i; /bin/busybox sleep 1; done"]`,
    `LABEL greeting="${greeting}"`,
    "",
  ].join("\n");

export async function startDashboardStack(label: string): Promise<DashboardStack> {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  const data = await tempDir(label);
  const ports = await freeUpPorts();
  const up = spawnUp(data.path, ports);
  try {
    await up.waitForLine(/Tabbify is up/, 180_000);
  } catch (err) {
    await up.stop(15_000);
    await data.remove();
    throw err;
  }
  const nodeKey = readFileSync(join(data.path, "node.key"), "utf8").trim();
  const url = `http://127.0.0.1:${ports.node}`;
  const askpass = join(data.path, "askpass.sh");
  writeFileSync(
    askpass,
    '#!/bin/sh\ncase "$1" in Username*) echo me ;; *) cat "$TABBIFY_KEY_FILE" ;; esac\n',
    {
      mode: 0o700,
    },
  );
  const trees = new Map<string, string>();

  const push = async (name: string, greeting: string, opts: { broken?: boolean } = {}): Promise<PushRun> => {
    let dir = trees.get(name);
    if (!dir) {
      dir = join(data.path, "work", name);
      mkdirSync(join(dir, "www"), { recursive: true });
      copyFileSync(realpathSync("/bin/busybox"), join(dir, "busybox"));
      writeFileSync(join(dir, "tabbify.toml"), `[app]\nname = "${name}"\n`);
      await git(["init", "--quiet", "--initial-branch=main"], dir);
      await git(["remote", "add", "tabbify", `${url}/git/${name}.git`], dir);
      trees.set(name, dir);
    }
    const dockerfile = opts.broken
      ? `FROM scratch\nCOPY no-such-file /x\nLABEL greeting="${greeting}"\n`
      : tickingPage(greeting);
    writeFileSync(join(dir, "Dockerfile"), dockerfile);
    writeFileSync(join(dir, "www", "index.html"), `${greeting}\n`);
    await git(["add", "-A"], dir);
    await git(["commit", "--quiet", "-m", greeting], dir);
    const done = new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn("git", ["push", "--quiet", "tabbify", "main"], {
        cwd: dir,
        env: { ...gitEnv, GIT_ASKPASS: askpass, TABBIFY_KEY_FILE: join(data.path, "node.key") },
      });
      let out = "";
      child.stdout.on("data", (c: Buffer) => {
        out += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        out += c.toString();
      });
      child.on("close", (code) => resolve({ code, out }));
    });
    return { done };
  };

  return {
    url,
    nodeKey,
    ports,
    push,
    close: async () => {
      await up.stop(15_000);
      await data.remove();
    },
  };
}

/** `fetch` with the node key, JSON back; fails on anything but `want`. */
export async function adminJson<T>(
  stack: DashboardStack,
  path: string,
  init: { method?: string; body?: unknown; want?: number } = {},
): Promise<T> {
  const res = await fetch(`${stack.url}${path}`, {
    method: init.method ?? "GET",
    headers: {
      authorization: `Bearer ${stack.nodeKey}`,
      ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  assert.equal(res.status, init.want ?? 200, `${path}: ${text.slice(0, 400)}`);
  return JSON.parse(text) as T;
}
