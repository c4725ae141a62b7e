/**
 * A supervisor started with --builder while no docker daemon answers advertises neither `docker`
 * nor `builder` on the node's roster; once a daemon answers (here: its socket appears at the
 * DOCKER_HOST the supervisor was given, relayed to the real dockerd) it advertises both, without
 * a restart.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fastSupervisorArgs, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { NODE_KEY, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const REAL_DOCKER = "/var/run/docker.sock";

describe("a supervisor with --builder and a docker daemon that appears later", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let sockDir: { path: string; remove(): Promise<void> };
  let relay: Server | undefined;
  const tags = async (): Promise<string[] | undefined> => {
    const res = await fetch(`${stack.node.url}/v1/supervisors`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    const body = (await res.json()) as { supervisors: Array<{ display_name: string; tags: string[] }> };
    return body.supervisors.find((s) => s.display_name === "test-sup")?.tags;
  };

  before(async () => {
    assert.ok(
      existsSync(REAL_DOCKER),
      `this test needs dockerd answering on ${REAL_DOCKER} (apt-get install docker.io; dockerd &)`,
    );
    sockDir = await tempDir("sup-builder-docker");
    const socket = join(sockDir.path, "docker.sock");
    sup = new SupervisorUnderTest(
      [...fastSupervisorArgs(5_000), "--builder", "--capability-refresh-ms", "500"],
      "local",
      { TABBIFY_NODE_KEY: NODE_KEY, DOCKER_HOST: `unix://${socket}` },
    );
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve()));
    await sockDir?.remove();
  });

  it("advertises builder once the daemon answers, without a restart", async () => {
    const before = await until("the supervisor on the roster", tags, 60_000);
    assert.ok(!before.includes("docker"), `no daemon yet: ${before.join(",")}`);
    assert.ok(!before.includes("builder"), "no builder tag while docker does not answer");

    relay = createServer((client) => {
      const upstream = connect(REAL_DOCKER);
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    await new Promise<void>((resolve) => relay!.listen(join(sockDir.path, "docker.sock"), resolve));

    const afterTags = await until(
      "docker and builder on the roster",
      async () => {
        const t = await tags();
        return t?.includes("builder") && t.includes("docker") ? t : undefined;
      },
      120_000,
    );
    assert.deepEqual(afterTags.slice(-2), ["docker", "builder"]);
  });
});
