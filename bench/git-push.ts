/**
 * `npm run bench:git-push`: `git push` to the node (`/git/<app>.git` on a `tabbify up` stack) until
 * the pushed version answers through `/app/<uuid>`, for a small `FROM scratch` image (static
 * busybox + one page). Run 1 creates the app (cold start); later runs are swaps, each a new commit.
 * The anchor, in the same run: `git push` of the same commit to a plain bare repository on disk
 * (the transfer alone). BENCH_GIT_PUSH_RUNS sets how many pushes (default 5).
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { sleep } from "../src/core/sleep.js";
import { busyboxPageDockerfile, gitEnv } from "../test/support/git-repo.js";
import { ensureDockerd, requireCommand, tempDir } from "../test/support/tools.js";
import { freeUpPorts, spawnUp } from "../test/support/up-stack.js";

const runs = Number(process.env.BENCH_GIT_PUSH_RUNS ?? "5");

const dockerfile = busyboxPageDockerfile;

function git(dir: string, ...args: string[]): void {
  const r = spawnSync("git", args, { cwd: dir, env: gitEnv, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
}

function push(
  dir: string,
  env: NodeJS.ProcessEnv,
  remote: string,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("git", ["push", "--quiet", remote, "main"], { cwd: dir, env });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.on("close", (code) => resolve({ code, out }));
  });
}

async function answers(url: string, want: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const res = await fetch(url).catch(() => undefined);
    if (res?.status === 200 && (await res.text()).includes(want)) return;
    await sleep(50);
  }
  throw new Error(`${url} never answered ${want}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  const data = await tempDir("bench-git-push");
  const ports = await freeUpPorts();
  const up = spawnUp(data.path, ports);
  try {
    await up.waitForLine(/Tabbify is up/, 180_000);
    const dir = join(data.path, "work");
    mkdirSync(join(dir, "www"), { recursive: true });
    copyFileSync(realpathSync("/bin/busybox"), join(dir, "busybox"));
    writeFileSync(join(dir, "tabbify.toml"), '[app]\nname = "benchpush"\n');
    git(dir, "init", "--quiet", "--initial-branch=main");
    const askpass = join(data.path, "askpass.sh");
    writeFileSync(
      askpass,
      '#!/bin/sh\ncase "$1" in Username*) echo me ;; *) cat "$TABBIFY_KEY_FILE" ;; esac\n',
      {
        mode: 0o700,
      },
    );
    const env = { ...gitEnv, GIT_ASKPASS: askpass, TABBIFY_KEY_FILE: join(data.path, "node.key") };
    const bare = join(data.path, "anchor.git");
    git(data.path, "init", "--quiet", "--bare", bare);
    const remote = `http://127.0.0.1:${ports.node}/git/benchpush.git`;
    const deploys: number[] = [];
    const anchors: number[] = [];
    let appUrl = "";
    for (let i = 1; i <= runs; i++) {
      const greeting = `push-v${i}`;
      writeFileSync(join(dir, "Dockerfile"), dockerfile(greeting));
      writeFileSync(join(dir, "www", "index.html"), `${greeting}\n`);
      git(dir, "add", "-A");
      git(dir, "commit", "--quiet", "-m", greeting);
      const a0 = performance.now();
      const anchor = await push(dir, env, bare);
      if (anchor.code !== 0) throw new Error(anchor.out);
      anchors.push(performance.now() - a0);
      const t0 = performance.now();
      const pushed = await push(dir, env, remote);
      if (pushed.code !== 0) throw new Error(`push ${i} failed:\n${pushed.out}`);
      appUrl ||= /remote: app: (\S+)/.exec(pushed.out)?.[1] ?? "";
      if (!appUrl) throw new Error(`no app URL in the push output:\n${pushed.out}`);
      await answers(appUrl, greeting);
      deploys.push(performance.now() - t0);
      process.stdout.write(
        `run ${i}${i === 1 ? " (cold)" : " (swap)"}: ${(deploys.at(-1)! / 1000).toFixed(2)} s\n`,
      );
    }
    const m = median(deploys);
    const ma = median(anchors);
    process.stdout.write(
      [
        `bench:git-push on ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}: ${runs} pushes of a FROM scratch busybox page`,
        `git push → new version answering: median ${(m / 1000).toFixed(2)} s (runs: ${deploys.map((d) => (d / 1000).toFixed(2)).join(", ")} s)`,
        `anchor, git push of the same commits to a local bare repository: median ${ma.toFixed(0)} ms; ratio ${(m / ma).toFixed(1)}×`,
        "",
      ].join("\n"),
    );
  } finally {
    await up.stop(15_000);
    await data.remove();
  }
}

await main();
