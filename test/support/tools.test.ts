import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import {
  buildScratchImage,
  freePort,
  requireCommand,
  run,
  spawnProcess,
  spawnTabbify,
  tempDir,
  waitForHttp,
} from "./tools.js";

test("requireCommand returns the path of a present command", () => {
  assert.match(requireCommand("sh", "dash"), /\/sh$/);
});

test("requireCommand throws, naming the package, when a command cannot be had", { timeout: 300_000 }, () => {
  assert.throws(
    () => requireCommand("tabbify-no-such-command", "tabbify-no-such-package"),
    /tabbify-no-such-package/,
  );
});

test("freePort gives a port that can be listened on", async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  await new Promise((r) => server.close(r));
});

test("tempDir creates a directory and remove() deletes it with its contents", async () => {
  const dir = await tempDir();
  await writeFile(join(dir.path, "f"), "x");
  assert.ok(existsSync(join(dir.path, "f")));
  await dir.remove();
  assert.equal(existsSync(dir.path), false);
});

test("waitForHttp waits for a server that starts late, and times out on none", async () => {
  const port = await freePort();
  const server = createServer((_req, res) => res.end("up"));
  setTimeout(() => server.listen(port, "127.0.0.1"), 300);
  try {
    const res = await waitForHttp(`http://127.0.0.1:${port}/`, 5_000);
    assert.equal(await res.text(), "up");
  } finally {
    server.close();
  }
  const unused = await freePort();
  await assert.rejects(waitForHttp(`http://127.0.0.1:${unused}/`, 500), /did not answer/);
});

test("spawnProcess: waitForLine matches a complete line, and rejects when the process exits first", async () => {
  const proc = spawnProcess("sh", [
    "-c",
    "printf 'start\\n'; sleep 0.2; printf 'listening on http://127.0.0.1:1234\\n'; sleep 5",
  ]);
  try {
    const m = await proc.waitForLine(/listening on (\S+)/, 5_000);
    assert.equal(m[1], "http://127.0.0.1:1234");
  } finally {
    await proc.stop();
  }
  const quitter = spawnProcess("sh", ["-c", "echo bye; exit 3"]);
  await assert.rejects(quitter.waitForLine(/never/, 5_000), /exited \(3\)/);
  assert.equal(await quitter.exited, 3);
});

test("spawnTabbify runs the built binary", async () => {
  const proc = spawnTabbify(["--help"]);
  await proc.waitForLine(/^usage: tabbify <role>/, 10_000);
  assert.equal(await proc.exited, 0);
});

test("buildScratchImage builds a FROM scratch busybox image that runs on the real dockerd", {
  timeout: 300_000,
}, async () => {
  const tag = `tabbify-test/scratch:${process.pid}`;
  await buildScratchImage(tag, {
    command: ["cat", "/etc/greeting"],
    files: { "/etc/greeting": "hello scratch\n" },
  });
  try {
    const { stdout } = await run("docker", ["run", "--rm", "--network", "none", tag], { timeoutMs: 120_000 });
    assert.equal(stdout, "hello scratch\n");
    const { stdout: layers } = await run("docker", [
      "image",
      "inspect",
      "--format",
      "{{len .RootFS.Layers}}",
      tag,
    ]);
    assert.equal(layers.trim(), "2", "busybox and the greeting file, nothing from a base image");
  } finally {
    await run("docker", ["rmi", "-f", tag]).catch(() => {});
  }
});
