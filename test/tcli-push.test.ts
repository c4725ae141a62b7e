/**
 * `tcli push` end to end: the compiled CLI in its own process, against the local store and a
 * real S3-compatible server (s3rver), and with the real dockerd for docker builds.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, readdir, readFile, realpath, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { parse } from "smol-toml";
import { type S3rverHandle, startS3rver } from "./support/s3rver.js";
import { ensureDockerd, repoRoot, requireCommand, run, tempDir } from "./support/tools.js";

const entry = join(repoRoot, "dist", "src", "main", "tcli.js");
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The environment without anything that would point tcli elsewhere than the test says. */
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_") && !k.startsWith("AWS_")),
);

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function tcli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number } = {},
): Promise<CliRun> {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npx tsc -p .\` first`);
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ["--enable-source-maps", entry, ...args], {
      cwd: opts.cwd ?? repoRoot,
      env: { ...cleanEnv, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** Runs a push that must succeed and returns its JSON result. */
async function push(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<PushJson> {
  const r = await tcli(["push", ...args, "--json"], opts);
  assert.equal(r.code, 0, `tcli push ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as PushJson;
}

interface PushJson {
  appId: string;
  appIdSource: string;
  version: number;
  latest: number;
  files: number;
  bytes: number;
  url: string;
}

const nodeManifest = `# hello node
[app]
name = "hello-node"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.js"]
`;
const wasmManifest = `[app]
name = "hello-wasm"

[lifecycle]
mode = "on_request"

[runtime]
type = "wasm"
entry = "hello.wasm"
`;
const dockerManifest = `[app]
name = "hello-docker"

[lifecycle]
mode = "always_on"

[runtime]
type = "docker"
port = 8080

[build]
kind = "docker"
`;

/** A node app directory with an ignored file, a nested file and a .git dir. */
async function nodeApp(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(join(dir, "lib"), { recursive: true });
  await mkdir(join(dir, ".git"), { recursive: true });
  await writeFile(join(dir, "manifest.toml"), nodeManifest);
  await writeFile(join(dir, "server.js"), "console.log('hello');\n");
  await writeFile(join(dir, "lib", "util.js"), "export const x = 1;\n");
  await writeFile(join(dir, ".gitignore"), "*.log\n");
  await writeFile(join(dir, "debug.log"), "ignored\n");
  await writeFile(join(dir, ".git", "HEAD"), "ref: refs/heads/main\n");
  return dir;
}

async function wasmApp(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "manifest.toml"), wasmManifest);
  await writeFile(join(dir, "hello.wasm"), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  await writeFile(join(dir, "hello.wat"), "(module)\n");
  return dir;
}

async function dockerApp(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "manifest.toml"), dockerManifest);
  await writeFile(join(dir, "Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n");
  await writeFile(join(dir, "hello.txt"), "hello from a scratch image\n");
  return dir;
}

/** Every file under a directory with its sha256: a store's whole state, for byte-identical checks. */
async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    if (!existsSync(d)) return;
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else
        out[relative(dir, p)] = createHash("sha256")
          .update(await readFile(p))
          .digest("hex");
    }
  };
  await walk(dir);
  return out;
}

async function lockOf(dir: string): Promise<{ app_id: string; latest_version: number }> {
  const doc = parse(await readFile(join(dir, "tabbify.lock"), "utf8")) as {
    app_id: string;
    latest_version: number;
  };
  return { ...doc };
}

/** A `docker` first on PATH that records its arguments and fails: proves whether tcli ran docker. */
async function fakeDocker(root: string): Promise<{ env: NodeJS.ProcessEnv; log: string }> {
  const bin = join(root, "fake-bin");
  const log = join(root, "docker-invocations.log");
  await mkdir(bin, { recursive: true });
  await writeFile(
    join(bin, "docker"),
    `#!/bin/sh\necho "$*" >> "${log}"\necho "fake docker refuses" >&2\nexit 1\n`,
  );
  await chmod(join(bin, "docker"), 0o755);
  return { env: { PATH: `${bin}:${process.env.PATH}` }, log };
}

describe("tcli push, local store", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let store: string;
  const local = () => ["--store", "local", "--store-dir", store];

  before(async () => {
    tmp = await tempDir("tabbify-push-local");
    store = join(tmp.path, "store");
  });
  after(async () => {
    await tmp.remove();
  });

  it("pushes a node app with the seed's layout, a stamped id and latest, then v2 on the same id", async () => {
    const dir = await nodeApp(tmp.path, "node-app");
    const first = await push([dir, ...local(), "--node", "http://node.test:8090"]);
    assert.match(first.appId, UUID_V7);
    assert.equal(first.appIdSource, "new");
    assert.equal(first.version, 1);
    assert.equal(first.url, `http://node.test:8090/app/${first.appId}`);
    const id = first.appId;

    const files = await snapshotDir(join(store, "apps"));
    assert.deepEqual(Object.keys(files).sort(), [
      `${id}/latest`,
      `${id}/v1/.claim`,
      `${id}/v1/.gitignore`,
      `${id}/v1/lib/util.js`,
      `${id}/v1/manifest.toml`,
      `${id}/v1/server.js`,
    ]);
    assert.equal(await readFile(join(store, "apps", id, "latest"), "utf8"), "1");
    const stored = await readFile(join(store, "apps", id, "v1", "manifest.toml"), "utf8");
    assert.equal(stored, nodeManifest.replace("[app]\n", `[app]\nid = "${id}"\n`));
    assert.equal(
      await readFile(join(store, "apps", id, "v1", "server.js"), "utf8"),
      "console.log('hello');\n",
    );
    assert.deepEqual(await lockOf(dir), { app_id: id, latest_version: 1 });

    const second = await push([dir, ...local()]);
    assert.equal(second.appId, id);
    assert.equal(second.appIdSource, "lock");
    assert.equal(second.version, 2);
    assert.equal(second.latest, 2);
    assert.equal(await readFile(join(store, "apps", id, "latest"), "utf8"), "2");
    assert.ok(existsSync(join(store, "apps", id, "v2", "manifest.toml")));
    assert.deepEqual(await lockOf(dir), { app_id: id, latest_version: 2 });
  });

  it("prints a readable summary with the app URL", async () => {
    const dir = await nodeApp(tmp.path, "node-summary");
    const r = await tcli(["push", dir, ...local()], { env: { TABBIFY_NODE_URL: "http://10.0.0.5:8090" } });
    assert.equal(r.code, 0, r.stderr);
    const { app_id } = await lockOf(dir);
    assert.match(r.stdout, /^pushed hello-node v1$/m);
    assert.match(r.stdout, new RegExp(`app id +${app_id}`));
    assert.match(r.stdout, /files +4 \(\d+ B\)/);
    assert.match(r.stdout, new RegExp(`url +http://10\\.0\\.0\\.5:8090/app/${app_id}`));
  });

  it("pushes a wasm app as just its entry and the manifest", async () => {
    const dir = await wasmApp(tmp.path, "wasm-app");
    const r = await push([dir, ...local()]);
    const keys = Object.keys(await snapshotDir(join(store, "apps", r.appId))).sort();
    assert.deepEqual(keys, ["latest", "v1/.claim", "v1/hello.wasm", "v1/manifest.toml"]);
  });

  it("pushes every example as the README shows", async () => {
    const examples = join(repoRoot, "examples");
    // hello-docker has its own test below; hello-handler is deployed with `tcli deploy`, not pushed.
    const names = (await readdir(examples)).filter(
      (n) => n.startsWith("hello-") && n !== "hello-docker" && existsSync(join(examples, n, "manifest.toml")),
    );
    assert.ok(
      names.includes("hello-node") && names.includes("hello-wasm"),
      `examples found: ${names.join(", ")}`,
    );
    for (const name of names) {
      // A copy: pushing writes tabbify.lock, which must not land in the repository.
      const dir = join(tmp.path, "examples", name);
      await cp(join(examples, name), dir, { recursive: true });
      const r = await push([dir, ...local()]);
      assert.equal(r.version, 1, name);
      assert.ok(existsSync(join(store, "apps", r.appId, "v1", "manifest.toml")), name);
    }
  });

  it("--dry-run prints the plan, leaves the store and lock byte-identical and never runs docker", async () => {
    const node = await nodeApp(tmp.path, "node-dry");
    const first = await push([node, ...local()]);
    const docker = await dockerApp(tmp.path, "docker-dry");
    const fake = await fakeDocker(tmp.path);
    const before = await snapshotDir(store);
    const lockBefore = await readFile(join(node, "tabbify.lock"), "utf8");

    const r = await tcli(["push", node, ...local(), "--dry-run"], { env: fake.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`upload +apps/${first.appId}/v2/server\\.js +22 B`));
    assert.match(r.stdout, new RegExp(`publish +apps/${first.appId}/latest = "2"`));
    const d = await tcli(["push", docker, ...local(), "--dry-run"], { env: fake.env });
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /docker build -t tbf-img-[0-9a-f-]{36}-v1 -f Dockerfile \./);
    assert.match(d.stdout, /docker save tbf-img-[0-9a-f-]{36}-v1 \| gzip/);

    assert.deepEqual(await snapshotDir(store), before, "the store changed during a dry run");
    assert.equal(await readFile(join(node, "tabbify.lock"), "utf8"), lockBefore);
    assert.equal(existsSync(join(docker, "tabbify.lock")), false, "a dry run wrote tabbify.lock");
    assert.equal(
      existsSync(fake.log),
      false,
      `docker was invoked: ${existsSync(fake.log) ? await readFile(fake.log, "utf8") : ""}`,
    );

    // The same push for real does reach the fake docker, which fails it: the check above can fail.
    const real = await tcli(["push", docker, ...local()], { env: fake.env });
    assert.equal(real.code, 1);
    assert.match(real.stderr, /docker (build|buildx) failed/);
    assert.ok(existsSync(fake.log));
    const { app_id } = await lockOf(docker);
    assert.equal(
      existsSync(join(store, "apps", app_id, "latest")),
      false,
      "latest was written for a failed build",
    );
  });

  it("two parallel pushes of one app end as vN and vN+1, both complete", async () => {
    const dir = await nodeApp(tmp.path, "node-parallel");
    const first = await push([dir, ...local()]);
    const [a, b] = await Promise.all([push([dir, ...local()]), push([dir, ...local()])]);
    assert.deepEqual([a.version, b.version].sort(), [2, 3]);
    const id = first.appId;
    assert.equal(await readFile(join(store, "apps", id, "latest"), "utf8"), "3");
    for (const v of [2, 3]) {
      const keys = Object.keys(await snapshotDir(join(store, "apps", id, `v${v}`))).sort();
      assert.deepEqual(keys, [".claim", ".gitignore", "lib/util.js", "manifest.toml", "server.js"], `v${v}`);
    }
  });

  it("examples/hello-docker on a machine without busybox: what to install, before any claim", async () => {
    const dir = join(tmp.path, "hello-docker-bare");
    await cp(join(repoRoot, "examples", "hello-docker"), dir, { recursive: true });
    const emptyPath = join(tmp.path, "empty-path");
    await mkdir(emptyPath, { recursive: true });
    const r = await tcli(["push", dir, ...local()], { env: { PATH: emptyPath } });
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stderr,
      /\[build\] host_programs: busybox is not on this machine's PATH; install it \(a static build.*busybox-static/,
    );
    assert.equal(existsSync(join(dir, "tabbify.lock")), false, "nothing was claimed or recorded");
  });

  it("a COPY of a file that is neither in the context nor a host program: the line and the cp to run", async () => {
    const dir = join(tmp.path, "docker-missing-copy");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "manifest.toml"), dockerManifest);
    await writeFile(join(dir, "Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\n");
    const r = await tcli(["push", dir, ...local()], { env: { PATH: "/usr/bin:/bin" } });
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stderr,
      /Dockerfile:2: COPY busybox: busybox is not in the build context \S+docker-missing-copy, the only directory docker build sees: cp "\$\(command -v busybox\)" \S+docker-missing-copy\/busybox, or list it in \[build\] host_programs\n/,
    );
  });

  it("a missing manifest: a clear message, exit 1", async () => {
    const dir = join(tmp.path, "empty");
    await mkdir(dir, { recursive: true });
    const r = await tcli(["push", dir, ...local()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /manifest\.toml does not exist/);
    assert.equal(r.stdout, "");
  });

  it("an unknown kind: file:line and the allowed values, and latest stays", async () => {
    const dir = await nodeApp(tmp.path, "node-bad-kind");
    const good = await push([dir, ...local()]);
    await writeFile(join(dir, "manifest.toml"), `${nodeManifest}\n[build]\nkind = "nix"\n`);
    const r = await tcli(["push", dir, ...local()]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /manifest\.toml:13:1: \[build\] kind = "nix" is not supported: use one of "docker"/,
    );
    assert.equal(await readFile(join(store, "apps", good.appId, "latest"), "utf8"), "1");
    assert.equal((await lockOf(dir)).latest_version, 1);
  });

  it("an unreadable file: named, exit 1, and latest stays", async () => {
    const dir = await nodeApp(tmp.path, "node-unreadable");
    const good = await push([dir, ...local()]);
    await writeFile(join(dir, "secret.key"), "k");
    await chmod(join(dir, "secret.key"), 0o000);
    // root reads anything: run the CLI as nobody, with the directories it needs opened up.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      for (const d of [tmp.path, store, dir]) await chmod(d, 0o777);
      await run("chmod", ["-R", "a+rwX", store, join(dir, "lib"), join(dir, ".git")]);
      for (const f of ["manifest.toml", "server.js", ".gitignore", "debug.log", "tabbify.lock"]) {
        await chmod(join(dir, f), 0o644);
      }
    }
    const r = await tcli(["push", dir, ...local()], asRoot ? { uid: 65534 } : {});
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot read secret\.key: permission denied/);
    assert.equal(await readFile(join(store, "apps", good.appId, "latest"), "utf8"), "1");
    assert.equal(existsSync(join(store, "apps", good.appId, "v2")), false, "nothing of v2 was written");
  });

  it("prints help for tcli and tcli push, and exits 2 on misuse", async () => {
    const top = await tcli(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /usage: tcli <command>/);
    assert.match(top.stdout, /push +publish a directory/);
    const pushHelp = await tcli(["push", "--help"]);
    assert.equal(pushHelp.code, 0);
    for (const flag of [
      "--store",
      "--store-dir",
      "--bucket",
      "--region",
      "--endpoint",
      "--node",
      "--dry-run",
    ]) {
      assert.ok(pushHelp.stdout.includes(flag), `push --help lacks ${flag}`);
    }
    const misuse = await tcli(["push"]);
    assert.equal(misuse.code, 2);
    assert.match(misuse.stderr, /exactly one directory/);
  });
});

describe("tcli push, S3 store (s3rver)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let s3: S3rverHandle;
  let client: S3Client;
  const bucket = "tabbify-apps";
  const s3Args = () => ["--store", "s3", "--bucket", bucket, "--endpoint", s3.endpoint];

  before(async () => {
    tmp = await tempDir("tabbify-push-s3");
    s3 = await startS3rver([bucket]);
    client = new S3Client({
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: {
        accessKeyId: s3.credentialsEnv.AWS_ACCESS_KEY_ID!,
        secretAccessKey: s3.credentialsEnv.AWS_SECRET_ACCESS_KEY!,
      },
    });
  });
  after(async () => {
    client?.destroy();
    await s3?.stop();
    await tmp?.remove();
  });

  async function bucketState(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
        out[o.Key!] = createHash("sha256")
          .update(await body.Body!.transformToByteArray())
          .digest("hex");
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async function body(key: string): Promise<string> {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return out.Body!.transformToString();
  }

  /** Keys of one app, without the per-contender claim markers s3rver's missing If-None-Match requires. */
  async function appKeys(id: string): Promise<string[]> {
    return Object.keys(await bucketState())
      .filter((k) => k.startsWith(`apps/${id}/`) && !k.startsWith(`apps/${id}/.claims/`))
      .sort();
  }

  it("pushes a node app and a wasm app with the seed's layout; a second push is v2", async () => {
    const dir = await nodeApp(tmp.path, "node-app");
    const env = s3.credentialsEnv;
    const first = await push([dir, ...s3Args()], { env });
    const id = first.appId;
    assert.deepEqual(await appKeys(id), [
      `apps/${id}/latest`,
      `apps/${id}/v1/.claim`,
      `apps/${id}/v1/.gitignore`,
      `apps/${id}/v1/lib/util.js`,
      `apps/${id}/v1/manifest.toml`,
      `apps/${id}/v1/server.js`,
    ]);
    assert.equal(await body(`apps/${id}/latest`), "1");
    assert.equal(
      await body(`apps/${id}/v1/manifest.toml`),
      nodeManifest.replace("[app]\n", `[app]\nid = "${id}"\n`),
    );
    const second = await push([dir, ...s3Args()], { env });
    assert.equal(second.version, 2);
    assert.equal(await body(`apps/${id}/latest`), "2");

    const wasm = await wasmApp(tmp.path, "wasm-app");
    const w = await push([wasm], {
      env: { ...env, TABBIFY_BUCKET: bucket, TABBIFY_S3_ENDPOINT: s3.endpoint },
    });
    assert.deepEqual(await appKeys(w.appId), [
      `apps/${w.appId}/latest`,
      `apps/${w.appId}/v1/.claim`,
      `apps/${w.appId}/v1/hello.wasm`,
      `apps/${w.appId}/v1/manifest.toml`,
    ]);
  });

  it("--dry-run leaves the bucket byte-identical", async () => {
    const dir = await nodeApp(tmp.path, "node-dry");
    await push([dir, ...s3Args()], { env: s3.credentialsEnv });
    const before = await bucketState();
    const fake = await fakeDocker(tmp.path);
    const r = await tcli(["push", dir, ...s3Args(), "--dry-run"], {
      env: { ...s3.credentialsEnv, ...fake.env },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /v2\/server\.js/);
    assert.deepEqual(await bucketState(), before);
    assert.equal(existsSync(fake.log), false);
  });

  it("two parallel pushes of one app end as vN and vN+1, both complete", async () => {
    const dir = await nodeApp(tmp.path, "node-parallel");
    const env = s3.credentialsEnv;
    const first = await push([dir, ...s3Args()], { env });
    const results = await Promise.all([push([dir, ...s3Args()], { env }), push([dir, ...s3Args()], { env })]);
    assert.deepEqual(results.map((r) => r.version).sort(), [2, 3]);
    const id = first.appId;
    assert.equal(await body(`apps/${id}/latest`), "3");
    const keys = await appKeys(id);
    for (const v of [2, 3]) {
      assert.deepEqual(
        keys.filter((k) => k.startsWith(`apps/${id}/v${v}/`)),
        [".claim", ".gitignore", "lib/util.js", "manifest.toml", "server.js"].map(
          (f) => `apps/${id}/v${v}/${f}`,
        ),
      );
    }
  });

  it("a bucket that does not exist: a clear message and exit 1", async () => {
    const dir = await nodeApp(tmp.path, "node-nobucket");
    const r = await tcli(
      ["push", dir, "--store", "s3", "--bucket", "no-such-bucket", "--endpoint", s3.endpoint],
      {
        env: s3.credentialsEnv,
      },
    );
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /S3 bucket "no-such-bucket" does not exist/);
    assert.equal(existsSync(join(dir, "tabbify.lock")), false);
  });

  it("wrong credentials: a clear message without the secret, exit 1, and latest stays", async () => {
    const dir = await nodeApp(tmp.path, "node-badcreds");
    const good = await push([dir, ...s3Args()], { env: s3.credentialsEnv });
    const wrongSecret = "definitely-not-the-secret-0123456789";
    // s3rver checks the access key id but not SigV4 signatures, so the key id is wrong too.
    const r = await tcli(["push", dir, ...s3Args()], {
      env: {
        ...s3.credentialsEnv,
        AWS_ACCESS_KEY_ID: "AKIAWRONGWRONGWRONG0",
        AWS_SECRET_ACCESS_KEY: wrongSecret,
      },
    });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /S3 denied .*check the credentials/);
    assert.ok(!r.stderr.includes(wrongSecret), "the secret leaked into the error");
    assert.equal(await body(`apps/${good.appId}/latest`), "1");
    assert.deepEqual(
      (await appKeys(good.appId)).filter((k) => k.includes("/v2/")),
      [],
      "nothing of v2 was written",
    );
  });
});

describe("tcli push, docker build (real dockerd)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("tabbify-push-docker");
  });
  after(async () => {
    await tmp?.remove();
  });

  it("builds, saves and uploads image.tar.gz tagged tbf-img-<uuid>-v<N>", { timeout: 300_000 }, async () => {
    // Throws with the command to run when no daemon can be had: this test never passes without docker.
    await ensureDockerd();
    const store = join(tmp.path, "store");
    const dir = await dockerApp(tmp.path, "docker-app");
    const r = await push([dir, "--store-dir", store]);
    const id = r.appId;
    const tag = `tbf-img-${id}-v1`;
    const keys = Object.keys(await snapshotDir(join(store, "apps", id))).sort();
    assert.deepEqual(keys, [
      "latest",
      "v1/.claim",
      "v1/Dockerfile",
      "v1/hello.txt",
      "v1/image.tar.gz",
      "v1/manifest.toml",
    ]);
    const image = join(store, "apps", id, "v1", "image.tar.gz");
    const tar = gunzipSync(await readFile(image));
    assert.ok(tar.includes(`${tag}:latest`), "the saved image does not carry its tag");

    // The supervisor's side of the contract: `docker load` brings the tag back.
    await run("docker", ["rmi", "-f", tag]);
    await run("sh", ["-c", `gunzip -c "$1" | docker load`, "sh", image]);
    const inspect = await run("docker", ["image", "inspect", "--format", "{{.Id}}", tag]);
    assert.match(inspect.stdout, /^sha256:/);
    await run("docker", ["rmi", "-f", tag]);
  });

  it("a failed build uses up no version and leaves latest alone", { timeout: 300_000 }, async () => {
    await ensureDockerd();
    const store = join(tmp.path, "store-failed");
    const dir = await dockerApp(tmp.path, "docker-fails");
    const good = await push([dir, "--store-dir", store]);
    assert.equal(good.version, 1);
    // A scratch image has no shell: the RUN fails inside docker build, after the claim.
    await writeFile(join(dir, "Dockerfile"), "FROM scratch\nRUN true\n");
    const failed = await tcli(["push", dir, "--store-dir", store]);
    assert.equal(failed.code, 1, failed.stdout);
    assert.equal(await readFile(join(store, "apps", good.appId, "latest"), "utf8"), "1");
    assert.equal(existsSync(join(store, "apps", good.appId, "v2")), false, "v2 is not held by the failure");
    await writeFile(join(dir, "Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n");
    const next = await push([dir, "--store-dir", store]);
    assert.equal(next.version, 2, "the next push gets the number the failed one gave back");
    for (const v of [1, 2]) await run("docker", ["rmi", "-f", `tbf-img-${good.appId}-v${v}`]);
  });

  it("pushes examples/hello-docker as the README shows", { timeout: 300_000 }, async () => {
    await ensureDockerd();
    const busybox = requireCommand("busybox", "busybox-static");
    const dir = join(tmp.path, "hello-docker");
    await cp(join(repoRoot, "examples", "hello-docker"), dir, { recursive: true });
    await cp(await realpath(busybox), join(dir, "busybox"));
    const r = await push([dir, "--store-dir", join(tmp.path, "store")]);
    const image = join(tmp.path, "store", "apps", r.appId, "v1", "image.tar.gz");
    assert.ok(gunzipSync(await readFile(image)).includes(`tbf-img-${r.appId}-v1:latest`));
    await run("docker", ["rmi", "-f", `tbf-img-${r.appId}-v1`]);
  });
});
