/**
 * The node's side of the supervisor key: every call `HttpSupervisorClient` makes carries it, and a
 * deploy on a tenant's behalf reaches the supervisor as an image reference only. Whatever extra
 * fields an object upstream holds (`command`, `artifact_dir`, `image_archive`), the wire body is
 * built field by field and never carries a command for the supervisor to run.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { HttpSupervisorClient } from "../../src/pipeline/clients.js";
import type { SupervisorDeployRequest } from "../../src/pipeline/executor.js";

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

describe("the node's calls to a supervisor", () => {
  let server: http.Server;
  let base: string;
  const seen: Seen[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        seen.push({
          method: req.method ?? "",
          url: req.url ?? "",
          authorization: req.headers.authorization,
          body,
        });
        res.setHeader("content-type", "application/json");
        if (req.url === "/v1/build") {
          res.end(
            JSON.stringify({
              image_ref: "r/t/a:s",
              digest: `sha256:${"a".repeat(64)}`,
              commit_sha: "c".repeat(40),
            }),
          );
        } else res.end(JSON.stringify({ state: "running", app_ula: "127.1.2.3" }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((r) => server.close(() => r())));

  it("sends the supervisor key on deploy, status and build", async () => {
    const client = new HttpSupervisorClient({ baseUrl: base, authToken: "fleet-key" });
    const uuid = crypto.randomUUID();
    seen.length = 0;
    await client.deploy(uuid, { ref: "127.0.0.1:5000/acme/app:1", runtime: "docker" });
    await client.app(uuid);
    await client.build(
      {
        repo_url: "https://example.invalid/acme/app",
        ref: "main",
        tenant: "acme",
        app_uuid: uuid,
        registry: "127.0.0.1:5000",
        image_repository: `127.0.0.1:5000/acme/${uuid}`,
        build_kind: "docker",
        context: ".",
        dockerfile: "Dockerfile",
      },
      () => {},
    );
    assert.deepEqual(
      seen.map((s) => [s.method, s.url.replace(uuid, "<uuid>"), s.authorization]),
      [
        ["POST", "/v1/apps/<uuid>/deploy", "Bearer fleet-key"],
        ["GET", "/v1/apps/<uuid>", "Bearer fleet-key"],
        ["POST", "/v1/build", "Bearer fleet-key"],
      ],
    );
  });

  it("never forwards a command, a host path or an archive in a deploy", async () => {
    const client = new HttpSupervisorClient({ baseUrl: base, authToken: "fleet-key" });
    seen.length = 0;
    const smuggled = {
      ref: "127.0.0.1:5000/acme/app:1",
      digest: `sha256:${"b".repeat(64)}`,
      runtime: "process",
      env: { GREETING: "hi" },
      manifest_toml: '[app]\nname = "app"\n',
      registry_token: "pull-token",
      command: ["sh", "-c", "cat /root/.tabbify/node.key"],
      artifact_dir: "/",
      image_archive: "/etc/shadow",
      entry: "../../etc/passwd",
      limits: { memory_mb: 1 },
    } as SupervisorDeployRequest;
    await client.deploy(crypto.randomUUID(), smuggled);
    const body = JSON.parse(seen[0]!.body) as Record<string, unknown>;
    // `limits` is a deploy field since the manifest promises (memory_mb, vcpus): the supervisor
    // checks it; what must never pass is a command, a host path or an archive.
    assert.deepEqual(Object.keys(body).sort(), [
      "digest",
      "env",
      "limits",
      "manifest_toml",
      "ref",
      "registry_token",
      "runtime",
    ]);
    assert.equal(seen[0]!.body.includes("cat /root"), false);
    assert.equal(seen[0]!.body.includes("/etc/"), false);
  });
});
