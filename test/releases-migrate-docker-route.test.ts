// The supervisor's migrate route with a docker release, on the real dockerd, for what the build
// path end to end (releases-migrate-docker.test.ts) does not reach: a pushed docker release names
// an image archive whose tag the daemon may not hold (it is `docker load`ed, never pulled), and a
// migration over the app's memory limit is killed by the kernel and answered `limit_reason: oom`.
// Either way its container is removed once its exit is read.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { randomUuid, SupervisorUnderTest } from "./runtime-plane-support.js";
import { buildScratchImage, tempDir } from "./support/tools.js";

const IMAGE = `tabbify-test/migrate-route:${process.pid}`;

const containersOf = (uuid: string): string[] =>
  execFileSync("docker", ["ps", "-a", "-q", "--filter", `label=tabbify.migrate=${uuid}`], {
    encoding: "utf8",
  })
    .split("\n")
    .filter(Boolean);

describe("a docker migration through the supervisor's route", () => {
  let sup: SupervisorUnderTest;
  let dir: { path: string; remove(): Promise<void> };
  let archive: string;

  before(async () => {
    await buildScratchImage(IMAGE);
    dir = await tempDir("tabbify-migrate-route");
    archive = join(dir.path, "image.tar");
    execFileSync("docker", ["save", "-o", archive, IMAGE]);
    sup = new SupervisorUnderTest();
    await sup.start();
  });
  after(async () => {
    await sup?.cleanup();
    await dir?.remove();
    execFileSync("docker", ["rmi", "-f", IMAGE], { stdio: "ignore" });
  });

  it("loads a release's image archive the daemon lacks, and runs unprivileged", async () => {
    execFileSync("docker", ["rmi", "-f", IMAGE], { stdio: "ignore" });
    const uuid = randomUuid();
    const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, {
      runtime: "docker",
      image: IMAGE,
      image_archive: archive,
      env: { STAGE: "loaded" },
      migrate: ["/bin/busybox", "sh", "-c", 'echo "$STAGE as $(/bin/busybox id -u)"'],
    });
    assert.equal(res.status, 200, `${JSON.stringify(res.json)}\n${sup.log.slice(-2000)}`);
    assert.equal(res.json.exit_code, 0, JSON.stringify(res.json));
    const [line] = res.json.log_tail as string[];
    assert.match(line ?? "", /^\[redacted\] as \d+$/, "the env value is cut out of the tail");
    assert.notEqual(line, "[redacted] as 0", "not as root");
    assert.deepEqual(containersOf(uuid), []);
  });

  it("answers oom when the app's memory limit killed the migration", async () => {
    const uuid = randomUuid();
    const res = await sup.call("POST", `/v1/apps/${uuid}/migrate`, {
      runtime: "docker",
      image: IMAGE,
      limits: { memory_mb: 16 },
      // dd holds one block of bs bytes in memory: eight times the limit.
      migrate: ["/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=2"],
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.notEqual(res.json.exit_code, 0, JSON.stringify(res.json));
    assert.equal(res.json.limit_reason, "oom", JSON.stringify(res.json));
    assert.deepEqual(containersOf(uuid), [], "removed after its exit was read");
  });
});
