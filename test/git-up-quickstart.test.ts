// Issue 13 under `tabbify up`: the README's git-push quick start run literally (the code block's
// own line, with only the node port swapped for this run's free port), then a deploy of a local
// repository by path, which `up` allows (--allow-local-repos). Real git, dockerd and busybox.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { busyboxPageDockerfile, gitEnv } from "./support/git-repo.js";
import { ensureDockerd, repoRoot, requireCommand, tempDir } from "./support/tools.js";
import { freeUpPorts, spawnUp, type UpPorts } from "./support/up-stack.js";

const dockerfile = busyboxPageDockerfile;

let data: { path: string; remove(): Promise<void> };
let ports: UpPorts;
let up: ReturnType<typeof spawnUp>;
let nodeKey: string;

/** A work tree on `main` whose page says `greeting`. */
function workTree(name: string, greeting: string): string {
  const dir = join(data.path, "work", name);
  mkdirSync(join(dir, "www"), { recursive: true });
  copyFileSync(realpathSync("/bin/busybox"), join(dir, "busybox"));
  writeFileSync(join(dir, "Dockerfile"), dockerfile(greeting));
  writeFileSync(join(dir, "www", "index.html"), `${greeting}\n`);
  writeFileSync(join(dir, "tabbify.toml"), `[app]\nname = "${name}"\n`);
  const g = (...args: string[]) => {
    const r = spawnSync("git", args, { cwd: dir, env: gitEnv, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  };
  g("init", "--quiet", "--initial-branch=main");
  g("add", "-A");
  g("commit", "--quiet", "-m", greeting);
  return dir;
}

async function answers(uuid: string, want: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = "";
  while (Date.now() < deadline) {
    const res = await fetch(`http://127.0.0.1:${ports.node}/app/${uuid}/`).catch(() => undefined);
    last = res ? await res.text() : "";
    if (res?.status === 200 && last.includes(want)) return;
    await sleep(250);
  }
  throw new Error(`app ${uuid} never answered ${want} (last: ${last.slice(0, 200)})`);
}

before(async () => {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  data = await tempDir("gitreg-up-quickstart");
  ports = await freeUpPorts();
  up = spawnUp(data.path, ports);
  await up.waitForLine(/Tabbify is up/, 120_000);
  nodeKey = readFileSync(join(data.path, "node.key"), "utf8").trim();
});
after(async () => {
  await up?.stop(15_000);
  await data?.remove();
});

it("the README's git push quick start deploys the pushed version", async () => {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const line = readme.split("\n").find((l) => l.startsWith("git remote add tabbify "));
  assert.ok(line, "README.md has no `git remote add tabbify …` line");
  assert.match(line, /127\.0\.0\.1:8090/);
  const command = line.replaceAll("127.0.0.1:8090", `127.0.0.1:${ports.node}`);
  const dir = workTree("myapp", "quickstart-v1");
  // The password a user types when git asks: the node key (`cat .tabbify/node.key`).
  const askpass = join(data.path, "askpass.sh");
  writeFileSync(
    askpass,
    '#!/bin/sh\ncase "$1" in Username*) echo me ;; *) cat "$TABBIFY_KEY_FILE" ;; esac\n',
    {
      mode: 0o700,
    },
  );
  const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn("sh", ["-c", command], {
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
  assert.equal(result.code, 0, result.out);
  assert.match(result.out, /remote: -----> build_and_push/);
  assert.match(result.out, /remote: target .*: ok/);
  const url = /remote: app: (\S+)/.exec(result.out)?.[1];
  assert.ok(url?.startsWith(`http://127.0.0.1:${ports.node}/app/`), result.out);
  await answers(/\/app\/([0-9a-f-]{36})\//.exec(url!)![1]!, "quickstart-v1");
  assert.ok(!result.out.includes(nodeKey), "the node key came back in the output");
});

it("a local repository deploys by path under tabbify up", async () => {
  const dir = workTree("localapp", "local-v1");
  const res = await fetch(`http://127.0.0.1:${ports.node}/v1/deploy`, {
    method: "POST",
    headers: { authorization: `Bearer ${nodeKey}`, "content-type": "application/json" },
    body: JSON.stringify({ repo_url: dir, ref: "main", tenant: "local" }),
  });
  const accepted = (await res.json()) as { id: string };
  assert.equal(res.status, 202, JSON.stringify(accepted));
  const deadline = Date.now() + 180_000;
  let body: { success?: boolean; app_uuid?: string } = {};
  while (Date.now() < deadline) {
    const s = await fetch(`http://127.0.0.1:${ports.node}/v1/deploy/${accepted.id}/status`, {
      headers: { authorization: `Bearer ${nodeKey}` },
    });
    body = (await s.json()) as typeof body;
    if (s.status === 200) break;
    await sleep(500);
  }
  assert.equal(body.success, true, JSON.stringify(body));
  await answers(body.app_uuid!, "local-v1");
});
