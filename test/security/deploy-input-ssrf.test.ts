/**
 * SSRF through repo_url: whoever may deploy names the URL the builder clones. Pointed at cloud
 * metadata (169.254.169.254), loopback or the platform's own listeners it would fetch from inside
 * the platform. The node's POST /v1/deploy and the builder's POST /v1/build refuse those with a
 * clear 400 unless --allow-private-repos is set, whichever spelling or DNS name hides the address,
 * and the clone follows no HTTP redirect (one could lead to such an address after the check).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { Builder } from "../../src/builder/builder.js";
import { registerBuildRoutes } from "../../src/builder/routes.js";
import { schemaAjv } from "../../src/core/api-docs.js";
import { isTabbifyError } from "../../src/core/errors.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import { requireCommand, tempDir } from "../support/tools.js";

const NODE_KEY = "ssrf-test-node-key-0123456789abcdef";

/** This machine's first non-loopback IPv4 address: neither loopback nor link-local. */
function outsideAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const nic of list ?? []) {
      if (nic.family === "IPv4" && !nic.internal && !nic.address.startsWith("169.254.")) return nic.address;
    }
  }
  throw new Error("this test needs a non-loopback IPv4 address on some interface (e.g. eth0)");
}

/** An HTTP server that counts requests and answers each with `handler`. */
async function countingServer(
  host: string,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ url: string; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? "");
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    hits,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

const refusedUrls = [
  "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
  "http://127.0.0.1:5000/acme/app.git",
  "http://localhost:8730/v1/apps",
  "http://[::1]:8090/acme/app.git",
  "http://[::ffff:127.0.0.1]/acme/app.git",
  "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
  "http://2130706433/acme/app.git",
  "http://0x7f.1/acme/app.git",
  "http://0177.0.0.1/acme/app.git",
  "http://0.0.0.0:8090/acme/app.git",
  "http://[fe80::1]/acme/app.git",
  "http://[fd5a:1f00:0:3::1]:5000/acme/app.git",
  "http://[fd5a:1f02:44a5:240b:121a::1]:8730/",
];

let root: { path: string; remove(): Promise<void> };

before(async () => {
  requireCommand("git", "git");
  root = await tempDir("tabbify-ssrf");
});
after(async () => {
  await root?.remove();
});

describe("POST /v1/deploy refuses repo_urls inside the platform", () => {
  let node: RunningNode;
  let open: RunningNode;
  const deploy = async (target: RunningNode, repoUrl: string) => {
    const res = await fetch(`${target.url}/v1/deploy`, {
      method: "POST",
      headers: { authorization: `Bearer ${NODE_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ repo_url: repoUrl, ref: "main", tenant: "acme" }),
    });
    return { status: res.status, json: (await res.json()) as { code?: string; error?: string; id?: string } };
  };
  const deployCount = async (target: RunningNode) => {
    const res = await fetch(`${target.url}/v1/deploys`, { headers: { authorization: `Bearer ${NODE_KEY}` } });
    return ((await res.json()) as { deploys: unknown[] }).deploys.length;
  };

  before(async () => {
    // Listening on every address: each of this machine's addresses is the platform's own.
    node = await startNode({
      host: "0.0.0.0",
      port: 0,
      dataDir: join(root.path, "node"),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
    });
    open = await startNode({
      port: 0,
      dataDir: join(root.path, "open-node"),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
      deploy: { allowPrivateRepos: true },
    });
  });
  after(async () => {
    await node?.close();
    await open?.close();
  });

  it("answers 400 REPO_URL_REFUSED for loopback, link-local, mesh and numeric spellings, recording nothing", async () => {
    const url = node.url.replace("0.0.0.0", "127.0.0.1");
    const target = { ...node, url };
    for (const repoUrl of refusedUrls) {
      const r = await deploy(target, repoUrl);
      assert.equal(r.status, 400, `${repoUrl}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, "REPO_URL_REFUSED", repoUrl);
      assert.match(r.json.error ?? "", /--allow-private-repos/);
    }
    assert.equal(await deployCount(target), 0);
  });

  it("refuses the node's own addresses when it listens on all of them", async () => {
    const url = node.url.replace("0.0.0.0", "127.0.0.1");
    const own = `http://${outsideAddress()}:${node.port}/acme/app.git`;
    const r = await deploy({ ...node, url }, own);
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.match(r.json.error ?? "", /the platform's own address/);
  });

  it("takes them with --allow-private-repos (tabbify up)", async () => {
    const r = await deploy(open, "http://127.0.0.1:5000/acme/app.git");
    assert.equal(r.status, 202, JSON.stringify(r.json));
  });
});

describe("POST /v1/build refuses them too, and the clone follows no redirect", () => {
  let app: FastifyInstance;
  let base: string;
  let builder: Builder;

  before(async () => {
    builder = new Builder({ workDir: join(root.path, "builds") });
    app = Fastify({ logger: false, ajv: schemaAjv });
    registerBuildRoutes(app, builder);
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app?.close();
  });

  const buildBody = (repoUrl: string, registry = "registry.example:5000") => {
    const appUuid = randomUUID();
    return { repo_url: repoUrl, ref: "main", tenant: "acme", app_uuid: appUuid, registry };
  };

  it("answers 400 BUILD_REQUEST_INVALID before cloning", async () => {
    for (const repoUrl of refusedUrls) {
      const res = await fetch(`${base}/v1/build`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(buildBody(repoUrl)),
      });
      const json = (await res.json()) as { code?: string; error?: string; stage?: string };
      assert.equal(res.status, 400, `${repoUrl}: ${JSON.stringify(json)}`);
      assert.equal(json.code, "BUILD_REQUEST_INVALID");
      assert.equal(json.stage, "validate");
    }
  });

  it("refuses the registry it is asked to push to as a repository host", async () => {
    const registry = `${outsideAddress()}:5000`;
    const res = await fetch(`${base}/v1/build`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(buildBody(`http://${registry}/acme/app.git`, registry)),
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, /the platform's own address/);
  });

  it("a repository host that redirects to loopback gets no request through", async () => {
    const inner = await countingServer("127.0.0.1", (_req, res) => {
      res.writeHead(404).end();
    });
    const outer = await countingServer(outsideAddress(), (req, res) => {
      res.writeHead(302, { location: `${inner.url}${req.url}` }).end();
    });
    try {
      await assert.rejects(
        builder.build(buildBody(`${outer.url}/acme/app.git`) as never, () => {}),
        (err) => isTabbifyError(err, "BUILD_CLONE_FAILED"),
      );
      assert.ok(outer.hits.length > 0, "git asked the outer host");
      assert.deepEqual(inner.hits, [], "the redirect to loopback was not followed");
    } finally {
      await outer.close();
      await inner.close();
    }
  });
});
