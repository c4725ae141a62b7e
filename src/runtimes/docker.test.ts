import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { buildScratchImage, ensureDockerd } from "../../test/support/tools.js";
import { isTabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import { adoptContainer, type ContainerWorkload, DockerRuntime } from "./docker.js";
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
