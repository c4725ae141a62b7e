import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { dockerCli, dockerDaemonAnswers } from "./docker-cli.js";

const cliMissing = spawnSync("sh", ["-c", "command -v docker"]).status !== 0;

describe("dockerCli", () => {
  it("needs the docker CLI", () => {
    assert.ok(!cliMissing, "these tests drive the docker CLI: apt-get install -y docker.io");
  });

  it("returns the output of a command that succeeds", async () => {
    const { stdout } = await dockerCli(["version", "--format", "{{.Client.Version}}"], { timeoutMs: 15_000 });
    assert.match(stdout.trim(), /^\d+\.\d+/);
  });

  it("rejects naming the subcommand and docker's own complaint", async () => {
    await assert.rejects(
      dockerCli(["image", "inspect", "tabbify-no-such-image:never"], { timeoutMs: 15_000 }),
      (err: Error) => /^docker image failed: /.test(err.message) && /no such image/i.test(err.message),
    );
  });

  it("runs with the environment it is given", async () => {
    // A DOCKER_HOST nobody listens on: the daemon cannot answer through it.
    const env = { ...process.env, DOCKER_HOST: "unix:///nonexistent/tabbify-docker.sock" };
    await assert.rejects(
      dockerCli(["version", "--format", "{{.Server.Version}}"], { timeoutMs: 15_000, env }),
      /docker version failed/,
    );
  });

  it("says whether the daemon answers", async () => {
    assert.equal(await dockerDaemonAnswers(15_000), true, "dockerd must run for this test (see FINDINGS.md)");
  });
});
