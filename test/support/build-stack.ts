/**
 * The build path of Tabbify, whole: the real auth service, registry (auth on), a node with a
 * GitHub double as the forge, and a `tabbify supervisor --builder` on its roster with its runners
 * and dockerd. A commit to the double's repository is built, pushed, signed and rolled by
 * `deploy(sha)`; images it leaves on the daemon are removed by `close()`.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { copyFileSync, realpathSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../../src/auth/keys.js";
import { buildAuthApp } from "../../src/auth/server.js";
import { sleep } from "../../src/core/sleep.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import type { RegistryAccess } from "../../src/pipeline/executor.js";
import { type RunningRegistry, startRegistry } from "../../src/registry/index.js";
import { removeImagesOf, type SupervisorUnderTest, startBuilderOnRoster } from "../runtime-plane-support.js";
import { createGitRepo, type GitRepo } from "./git-repo.js";
import { type GithubDouble, startGithubDouble } from "./github-double.js";
import { type NodeApi, nodeApi } from "./node-api.js";
import { ensureDockerd, requireCommand, tempDir } from "./tools.js";

export interface DeployStatusBody {
  state: string;
  success: boolean;
  app_uuid: string;
  digest: string;
  image_ref: string;
  deploy_id?: string;
  error?: { step: string; code: string; message?: string };
}

export interface BuildStack {
  root: string;
  node: RunningNode;
  registry: RunningRegistry;
  registryAccess: RegistryAccess;
  registryHost: string;
  github: GithubDouble;
  /** The double's repository; its work dir holds a copy of the static busybox (`busybox`). */
  repo: GitRepo;
  supervisor: SupervisorUnderTest;
  owner: string;
  nodeKey: string;
  api: NodeApi;
  /** `POST /v1/deploy` of `sha`, waited for to its end; the status with the deploy's id. */
  deploy(sha: string): Promise<DeployStatusBody & { deploy_id: string }>;
  close(): Promise<void>;
}

export async function startBuildStack(opts: {
  label: string;
  owner: string;
  repo: string;
  supervisorName: string;
}): Promise<BuildStack> {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  const nodeKey = `${opts.label}-node-key`;
  const supervisorKey = `${opts.label}-supervisor-key`;
  const root = await tempDir(`tabbify-${opts.label}`);
  const closers: (() => Promise<unknown>)[] = [() => root.remove()];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch(() => undefined);
  };
  try {
    const authDir = join(root.path, "auth");
    const auth: FastifyInstance = buildAuthApp({ key: await loadOrCreateSigningKey(authDir) });
    await auth.listen({ host: "127.0.0.1", port: 0 });
    closers.push(() => auth.close());
    const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
    const registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
    closers.push(() => registry.close());
    const registryHost = new URL(registry.url).host;
    const projectRoot = join(root.path, "git");
    const repo = await createGitRepo(projectRoot, opts.owner, opts.repo);
    copyFileSync(realpathSync("/bin/busybox"), join(repo.workDir, "busybox"));
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const github = await startGithubDouble({
      projectRoot,
      appId: "1",
      appPublicKey: publicKey,
      installations: {},
    });
    closers.push(() => github.close());
    const registryAccess = await tenantRegistryAccess({ registryHost, authDataDir: authDir });
    const node = await startNode({
      port: 0,
      dataDir: join(root.path, "node"),
      nodeKey,
      httpLogLevel: "silent",
      deploy: {
        githubApiUrl: github.apiUrl,
        registry: registryAccess,
        supervisorKey,
        allowPrivateRepos: true,
      },
    });
    closers.push(() => node.close());
    const supervisor = await startBuilderOnRoster(node, opts.supervisorName, { nodeKey, supervisorKey });
    closers.push(async () => {
      await supervisor.cleanup();
      for (const uuid of supervisor.dockerApps) removeImagesOf(`${registryHost}/${opts.owner}/${uuid}`);
    });
    const api = nodeApi(node.url, nodeKey);
    return {
      root: root.path,
      node,
      registry,
      registryAccess,
      registryHost,
      github,
      repo,
      supervisor,
      owner: opts.owner,
      nodeKey,
      api,
      async deploy(sha) {
        const started = await api<{ id: string }>("POST", "/v1/deploy", {
          repo_url: github.cloneUrl(`${opts.owner}/${opts.repo}`),
          ref: sha,
          tenant: opts.owner,
        });
        assert.equal(started.status, 202, JSON.stringify(started.json));
        const deadline = Date.now() + 240_000;
        while (Date.now() < deadline) {
          const { status, json } = await api<DeployStatusBody>("GET", `/v1/deploy/${started.json.id}/status`);
          if (status === 200) {
            if (json.app_uuid) supervisor.dockerApps.add(json.app_uuid);
            return { ...json, deploy_id: started.json.id };
          }
          await sleep(250);
        }
        throw new Error(`deploy ${started.json.id} not done\n${supervisor.log.slice(-3000)}`);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
