import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { buildScratchImage, ensureDockerd } from "../../test/support/tools.js";
import { isTabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import { adoptContainer, type ContainerWorkload, DockerRuntime } from "./docker.js";
import { containerHardening, containerUser } from "./docker-run.js";
import { waitHealthy } from "./health.js";
import type { WorkloadSpec } from "./runtime.js";
import { httpGet, runtimeSuite } from "./runtime-suite.js";

const execFileAsync = promisify(execFile);
const image = "tabbify-test/hello-docker:suite";
const exitingImage = "tabbify-test/exit3:suite";

// The same app as examples/hello-docker: busybox httpd on HOST:PORT, graceful on SIGTERM.
const startScript = `/bin/busybox mkdir -p /tmp/www
echo "hello from hello-docker v\${VERSION:-1}" > /tmp/www/index.html
/bin/busybox httpd -f -p "$HOST:$PORT" -h /tmp/www &
pid=$!
trap 'echo "hello-docker: SIGTERM received, closing"; kill $pid; wait $pid; exit 0' TERM
wait $pid
`;

let imagesBuilt: Promise<void> | undefined;
/** dockerd and the two test images, once per test file; a clear failure when dockerd cannot run. */
function dockerReady(): Promise<void> {
  imagesBuilt ??= (async () => {
    try {
      await ensureDockerd();
    } catch (err) {
      throw new Error(
        `the docker runtime tests need a Docker daemon and none could be started (${(err as Error).message}). ` +
          "Run as root: apt-get install -y docker.io busybox-static && dockerd --storage-driver=vfs --iptables=false --bridge=none &",
      );
    }
    await buildScratchImage(image, { command: ["sh", "/start.sh"], files: { "/start.sh": startScript } });
    await buildScratchImage(exitingImage, { command: ["sh", "-c", "sleep 0.2; exit 3"] });
  })();
  return imagesBuilt;
}

const spec = (env: Record<string, string>): WorkloadSpec => ({ runtime: "docker", image, env });

runtimeSuite("docker", spec, {
  setup: dockerReady,
  makeRuntime: (options) => new DockerRuntime(options),
  healthTimeoutMs: 30_000,
  invalidSpecs: () => [
    { name: "no image", spec: { runtime: "docker" }, code: "SPEC_INVALID" },
    {
      name: "not an image reference",
      spec: { runtime: "docker", image: "Not An Image!" },
      code: "SPEC_INVALID",
    },
    {
      name: "missing archive",
      spec: { runtime: "docker", imageArchive: "/nonexistent/image.tar.gz" },
      code: "ARTIFACT_NOT_FOUND",
    },
    { name: "a field of another runtime", spec: { ...spec({}), command: ["sh"] }, code: "SPEC_INVALID" },
    { name: "a wasm-only limit", spec: { ...spec({}), limits: { timeoutMs: 5 } }, code: "SPEC_INVALID" },
    { name: "env value with a newline", spec: spec({ A: "x\ny" }), code: "SPEC_INVALID" },
  ],
  exitsOnItsOwn: () => ({ runtime: "docker", image: exitingImage }),
});

test("docker: an image that exists nowhere fails to start with IMAGE_PULL_FAILED", async () => {
  await dockerReady();
  await assert.rejects(
    new DockerRuntime({ output: "ignore" }).start(
      { runtime: "docker", image: "127.0.0.1:1/tabbify/none:latest" },
      await freeLoopbackPort(),
    ),
    (err) => isTabbifyError(err, "IMAGE_PULL_FAILED"),
  );
});

let archiveDir = "";
before(async () => {
  archiveDir = await mkdtemp(join(tmpdir(), "tabbify-docker-archive-"));
});
after(async () => {
  await rm(archiveDir, { recursive: true, force: true });
});

test("docker: runs an image loaded from a gzipped docker save archive", async () => {
  await dockerReady();
  const archive = join(archiveDir, "image.tar.gz");
  const archivedTag = "tabbify-test/hello-docker:archived";
  await execFileAsync("docker", ["tag", image, archivedTag]);
  await execFileAsync("sh", ["-c", 'docker save "$1" | gzip -1 > "$2"', "sh", archivedTag, archive]);
  await execFileAsync("docker", ["rmi", archivedTag]);
  const workload = await new DockerRuntime({ output: "ignore" }).start(
    { runtime: "docker", imageArchive: archive, env: { VERSION: "archived" } },
    await freeLoopbackPort(),
  );
  try {
    await waitHealthy(workload.upstream, { timeoutMs: 30_000, exited: workload.exited });
    assert.match((await httpGet("127.0.0.1", workload.upstream.port)).body, /varchived/);
    assert.match(workload.version ?? "", /^sha256:[a-f0-9]{64}$/);
  } finally {
    await workload.stop(5_000);
  }
});

test("docker: a restarted runner re-finds its container by name and can stop it", async () => {
  await dockerReady();
  const appUuid = "0191e7c2-1111-7222-8333-444455556666";
  const original = (await new DockerRuntime({ output: "ignore" }).start(
    { ...spec({ VERSION: "adopted" }), appUuid },
    await freeLoopbackPort(),
  )) as ContainerWorkload;
  try {
    assert.match(original.name, new RegExp(`^tbf-${appUuid}-[a-z0-9]+$`));
    await waitHealthy(original.upstream, { timeoutMs: 30_000, exited: original.exited });
    const adopted = await adoptContainer(original.name, { output: "ignore" });
    assert.ok(adopted, "container not found by name");
    assert.deepEqual(adopted.upstream, original.upstream);
    assert.equal(adopted.pid, original.pid);
    assert.equal(adopted.version, original.version);
    await adopted.stop(5_000);
    assert.deepEqual(await adopted.exited, { code: 0, signal: null });
    assert.equal(await adoptContainer(original.name), undefined, "a removed container is not adoptable");
  } finally {
    await original.stop(1_000);
  }
});

/** The containers labelled with an app, running or not. */
async function appContainers(appUuid: string): Promise<string[]> {
  const { stdout } = await execFileAsync("docker", [
    "ps",
    "-a",
    "--filter",
    `label=tabbify.app=${appUuid}`,
    "--format",
    "{{.Names}}",
  ]);
  return stdout.split("\n").filter((n) => n !== "");
}

/** Removes what a test left of its own app (each test has a fresh uuid: nothing of another's). */
async function removeApp(appUuid: string): Promise<void> {
  const names = await appContainers(appUuid);
  if (names.length > 0) await execFileAsync("docker", ["rm", "-f", ...names]).catch(() => undefined);
}

/** A runner's runtime, then the one of the runner the supervisor respawns after a SIGKILL. */
const runtimeOfARunner = () => new DockerRuntime({ output: "ignore" });

async function startFor(s: WorkloadSpec): Promise<ContainerWorkload> {
  return (await runtimeOfARunner().start(s, await freeLoopbackPort())) as ContainerWorkload;
}

test("docker: adopt takes over a killed runner's container (same name, pid, port) and stop removes it", async () => {
  await dockerReady();
  const appUuid = randomUUID();
  // A value holding what a naive parse of docker's output would split on.
  const appSpec: WorkloadSpec = { ...spec({ VERSION: "adopt|me = 1" }), appUuid };
  try {
    const original = await startFor(appSpec);
    await waitHealthy(original.upstream, { timeoutMs: 30_000, exited: original.exited });
    const adopted = (await runtimeOfARunner().adopt(appSpec)) as ContainerWorkload | undefined;
    assert.ok(adopted, "the running container was not adopted");
    assert.equal(adopted.name, original.name);
    assert.equal(adopted.pid, original.pid);
    assert.deepEqual(adopted.upstream, original.upstream);
    assert.equal(adopted.version, original.version);
    const res = await httpGet("127.0.0.1", adopted.upstream.port);
    assert.equal(res.status, 200);
    assert.match(res.body, /vadopt\|me = 1/);
    await adopted.stop(5_000);
    assert.deepEqual(await adopted.exited, { code: 0, signal: null });
    assert.deepEqual(await appContainers(appUuid), [], "stop() left the container behind");
  } finally {
    await removeApp(appUuid);
  }
});

test("docker: adopt refuses a container running another env, image or memory limit, and removes it", async () => {
  await dockerReady();
  const started = (appUuid: string): WorkloadSpec => ({ ...spec({ VERSION: "a", EXTRA: "x" }), appUuid });
  const others: { what: string; spec: (appUuid: string) => WorkloadSpec }[] = [
    { what: "another env value", spec: (appUuid) => ({ ...spec({ VERSION: "b", EXTRA: "x" }), appUuid }) },
    { what: "one env variable fewer", spec: (appUuid) => ({ ...spec({ VERSION: "a" }), appUuid }) },
    {
      what: "another image",
      spec: (appUuid) => ({
        runtime: "docker",
        image: exitingImage,
        env: { VERSION: "a", EXTRA: "x" },
        appUuid,
      }),
    },
    { what: "a memory limit", spec: (appUuid) => ({ ...started(appUuid), limits: { memoryMb: 64 } }) },
  ];
  for (const other of others) {
    const appUuid = randomUUID();
    try {
      const original = await startFor(started(appUuid));
      assert.equal((await inspectState(original.name)).running, true, other.what);
      assert.equal(await runtimeOfARunner().adopt(other.spec(appUuid)), undefined, other.what);
      assert.deepEqual(await appContainers(appUuid), [], `${other.what}: the leftover was not removed`);
    } finally {
      await removeApp(appUuid);
    }
  }
});

test("docker: of two matching leftovers the newest is adopted and the other removed", async () => {
  await dockerReady();
  const appUuid = randomUUID();
  const appSpec: WorkloadSpec = { ...spec({ VERSION: "twice" }), appUuid, limits: { memoryMb: 64 } };
  try {
    const older = await startFor(appSpec);
    const newer = await startFor(appSpec);
    await waitHealthy(newer.upstream, { timeoutMs: 30_000, exited: newer.exited });
    const adopted = (await runtimeOfARunner().adopt(appSpec)) as ContainerWorkload | undefined;
    assert.ok(adopted, "neither container was adopted");
    assert.equal(adopted.name, newer.name);
    assert.deepEqual(adopted.upstream, newer.upstream);
    assert.deepEqual(await appContainers(appUuid), [newer.name]);
    await older.exited;
    assert.match((await httpGet("127.0.0.1", adopted.upstream.port)).body, /vtwice/);
    await adopted.stop(5_000);
  } finally {
    await removeApp(appUuid);
  }
});

test("docker: adopt without containers or without an app uuid finds nothing; a stopped leftover is removed", async () => {
  await dockerReady();
  const runtime = runtimeOfARunner();
  assert.equal(await runtime.adopt({ ...spec({}), appUuid: randomUUID() }), undefined, "no containers");
  const appUuid = randomUUID();
  try {
    const running = await startFor({ ...spec({}), appUuid });
    // Without a (valid) app uuid there is no app to find containers of: nothing is touched.
    assert.equal(await runtime.adopt(spec({})), undefined, "no app uuid");
    assert.equal(await runtime.adopt({ ...spec({}), appUuid: "not-a-uuid" }), undefined, "a bad app uuid");
    assert.deepEqual(await appContainers(appUuid), [running.name]);
    await running.stop(5_000);

    const exiting: WorkloadSpec = { runtime: "docker", image: exitingImage, appUuid };
    const stopped = await startFor(exiting);
    assert.deepEqual(await stopped.exited, { code: 3, signal: null });
    assert.deepEqual(await appContainers(appUuid), [stopped.name]);
    assert.equal(await runtime.adopt(exiting), undefined, "a stopped container was adopted");
    assert.deepEqual(await appContainers(appUuid), [], "the stopped leftover was not removed");
  } finally {
    await removeApp(appUuid);
  }
});

test("docker: adopt never takes a container for an archive-only spec (it names no image to compare)", async () => {
  await dockerReady();
  const dir = await mkdtemp(join(tmpdir(), "tabbify-docker-adopt-"));
  const appUuid = randomUUID();
  try {
    const archive = join(dir, "hello.tar.gz");
    await execFileAsync("sh", ["-c", 'docker save "$1" | gzip -1 > "$2"', "sh", image, archive]);
    const archived: WorkloadSpec = {
      runtime: "docker",
      imageArchive: archive,
      env: { VERSION: "a" },
      appUuid,
    };
    await startFor(archived);
    assert.equal(await runtimeOfARunner().adopt(archived), undefined);
    assert.deepEqual(await appContainers(appUuid), [], "the leftover was not removed");
  } finally {
    await removeApp(appUuid);
    await rm(dir, { recursive: true, force: true });
  }
});

async function inspectState(name: string): Promise<{ running: boolean }> {
  const { stdout } = await execFileAsync("docker", ["inspect", "-f", "{{json .State.Running}}", name]);
  return { running: JSON.parse(stdout) as boolean };
}

test("docker: a container's user is the app's uid and group, else nobody; never the image's root", () => {
  assert.equal(containerUser({ uid: 1879048200, gid: 995, home: "/x" }), "1879048200:995");
  assert.equal(containerUser(undefined), "65534:65534");
  assert.deepEqual(containerHardening.slice(0, 4), [
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
  ]);
});
