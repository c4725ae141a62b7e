/**
 * A node and one process supervisor sharing a local artifact store, on the node's roster, and an
 * app directory `tcli push` publishes to both: the smallest whole Tabbify a pushed release rolls
 * through (the node's releases, rollout, migration gate and audit; the supervisor's runner).
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AuditEvent } from "../../src/ledger/chain.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { SupervisorUnderTest, sleep } from "../runtime-plane-support.js";
import { type DeployEvent, deployEvents, type NodeApi, nodeApi } from "./node-api.js";
import { runTcli } from "./tcli-node.js";
import { tempDir } from "./tools.js";

export interface PushedRollout {
  environment: string;
  state: "succeeded" | "failed" | "skipped";
  code?: string;
  error?: string;
  deploy_id?: string;
}

export interface PushedRelease {
  id: string;
  digest: string;
  rollout: PushedRollout;
}

export interface DeployStatus {
  id: string;
  app_uuid?: string;
  created_at: string;
  state: string;
  error?: { step: string; code: string };
}

export type { DeployEvent };

export interface PushStack {
  node: RunningNode;
  sup: SupervisorUnderTest;
  /** The pushed app's directory: write its files, then `push()`. */
  appDir: string;
  /** tcli's HOME. */
  home: string;
  nodeKey: string;
  /** `tcli push` of appDir with `files` written first; asserts tcli exited 0. */
  push(files: Record<string, string>): Promise<{ appId: string; release: PushedRelease }>;
  /** `tcli <args> --json --node <node>` with the node key; asserts exit 0, returns its JSON. */
  tcli<T>(args: string[]): Promise<T>;
  /** The node API with the node key. */
  api: NodeApi;
  events(deployId: string): Promise<DeployEvent[]>;
  /** The newest deploy record of `app` (a failed push rollout answers without its id). */
  newestDeploy(app: string): Promise<DeployStatus>;
  /** Every audit event, oldest first. */
  audit(): Promise<AuditEvent[]>;
  close(): Promise<void>;
}

export async function startPushStack(opts: {
  label: string;
  supervisorName: string;
  manifestToml: string;
}): Promise<PushStack> {
  const nodeKey = `${opts.label}-node-key`;
  const supervisorKey = `${opts.label}-supervisor-key`;
  const root = await tempDir(`tabbify-${opts.label}`);
  const storeDir = join(root.path, "store");
  const appDir = join(root.path, "app");
  const home = join(root.path, "cli-home");
  await mkdir(appDir, { recursive: true });
  await mkdir(home, { recursive: true });
  await writeFile(join(appDir, "manifest.toml"), opts.manifestToml);
  let node: RunningNode | undefined;
  let sup: SupervisorUnderTest | undefined;
  const close = async () => {
    await sup?.cleanup();
    await node?.close();
    await root.remove();
  };
  try {
    node = await startNode({
      port: 0,
      dataDir: join(root.path, "node"),
      nodeKey,
      httpLogLevel: "silent",
      deploy: { supervisorKey },
    });
    sup = new SupervisorUnderTest(
      ["--node", node.url, "--name", opts.supervisorName, "--store", "local", "--store-dir", storeDir],
      "local",
      { TABBIFY_NODE_KEY: nodeKey, SUPERVISOR_API_KEY: supervisorKey },
    );
    await sup.start();
    const deadline = Date.now() + 20_000;
    while (!node.coordinator.supervisors().some((s) => s.name === opts.supervisorName)) {
      if (Date.now() > deadline)
        throw new Error(`${opts.supervisorName} never joined the roster\n${sup.log}`);
      await sleep(100);
    }
  } catch (err) {
    await close();
    throw err;
  }
  const running = node;
  const api = nodeApi(running.url, nodeKey);
  const cli = { home, env: { TABBIFY_TOKEN: nodeKey } };
  return {
    node: running,
    sup,
    appDir,
    home,
    nodeKey,
    api,
    async push(files) {
      for (const [name, content] of Object.entries(files)) await writeFile(join(appDir, name), content);
      const run = await runTcli(
        ["push", appDir, "--store", "local", "--store-dir", storeDir, "--json", "--node", running.url],
        cli,
      );
      const pushed = JSON.parse(run.stdout) as { appId: string; release: PushedRelease };
      // tcli exits 1 when the node's rollout of the pushed version failed.
      assert.equal(run.code, pushed.release?.rollout?.state === "failed" ? 1 : 0, run.stderr);
      return pushed;
    },
    async tcli<T>(args: string[]) {
      const run = await runTcli([...args, "--json", "--node", running.url], cli);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout) as T;
    },
    events: (deployId) => deployEvents(running.url, nodeKey, deployId),
    async newestDeploy(app) {
      const { json } = await api<{ deploys: DeployStatus[] }>("GET", "/v1/deploys");
      const mine = json.deploys
        .filter((d) => d.app_uuid === app)
        .sort((a, b) => b.created_at.localeCompare(a.created_at));
      assert.ok(mine[0], `no deploy of ${app}`);
      return mine[0];
    },
    async audit() {
      const events: AuditEvent[] = [];
      for (;;) {
        const after = events.at(-1)?.seq ?? 0;
        const page = await api<{ events: AuditEvent[] }>("GET", `/api/v1/audit?after=${after}&limit=100`);
        assert.equal(page.status, 200, JSON.stringify(page.json));
        if (page.json.events.length === 0) return events;
        events.push(...page.json.events);
      }
    },
    close,
  };
}
