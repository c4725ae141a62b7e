/**
 * A node for handler-deploy tests: the node key, tenant tokens for acme and globex, optional
 * short plan/session lifetimes, and helpers to call the review API and read the audit chain.
 */
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { loadOrCreateSigningKey } from "../../src/auth/keys.js";
import { buildAuthApp } from "../../src/auth/server.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { analyseHandler } from "../../src/contract/analyse.js";
import type { Contract } from "../../src/contract/types.js";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import { type RunningRegistry, startRegistry } from "../../src/registry/index.js";
import { registryToken } from "../registry-helpers.js";
import { tempDir } from "./tools.js";

export const CONTRACT_NODE_KEY = "contract-node-key-0123456789abcdef";

export interface ContractStack {
  node: RunningNode;
  url: string;
  /** The node's data dir (a supervisor's is always another). */
  dataDir: string;
  /** The platform registry handler bundles go through (auth on, tokens from the auth service). */
  registry: RunningRegistry;
  /** A registry token of `tenant` with pull on `repository`, as `docker login` would get one. */
  pullToken(tenant: string, repository: string): Promise<string>;
  acme: string;
  globex: string;
  close(): Promise<void>;
}

export async function startContractStack(
  opts: { planTtlMs?: number; sessionTtlMs?: number; supervisorKey?: string; fakeSupervisor?: boolean } = {},
): Promise<ContractStack> {
  const data = await tempDir("contract-node");
  const authDir = join(data.path, "auth");
  const key = await loadOrCreateSigningKey(authDir);
  const auth = buildAuthApp({ key });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  const registry = await startRegistry({
    dataDir: join(data.path, "registry"),
    host: "127.0.0.1",
    port: 0,
    authUrl: `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`,
  });
  const access = await tenantRegistryAccess({
    registryHost: new URL(registry.url).host,
    authDataDir: authDir,
  });
  const node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: CONTRACT_NODE_KEY,
    dataDir: join(data.path, "node"),
    deploy: { registry: access, ...(opts.supervisorKey ? { supervisorKey: opts.supervisorKey } : {}) },
    registry: { verifyTenantToken: (t) => verifyTenantToken(key, t) },
    contractDeploys: {
      ...(opts.planTtlMs ? { planTtlMs: opts.planTtlMs } : {}),
      ...(opts.sessionTtlMs ? { sessionTtlMs: opts.sessionTtlMs } : {}),
    },
  });
  if (opts.fakeSupervisor) {
    // A roster entry only: these tests stop before anything is started.
    node.coordinator.register({
      kind: "supervisor",
      name: "api-only",
      address: "http://127.0.0.1:9",
      ula: "127.0.0.1",
      version: "test",
      tags: ["supervisor", "process"],
    });
  }
  return {
    node,
    url: node.url,
    dataDir: join(data.path, "node"),
    registry,
    pullToken: async (tenant, repository) =>
      registryToken(registry.url, await issueTenantToken(key, { tenant, subject: "test", ttlSeconds: 600 }), [
        `repository:${repository}:pull`,
      ]),
    acme: await issueTenantToken(key, { tenant: "acme", subject: "dev", ttlSeconds: 600 }),
    globex: await issueTenantToken(key, { tenant: "globex", subject: "dev", ttlSeconds: 600 }),
    close: async () => {
      await node.close();
      await registry.close();
      await auth.close();
      await data.remove();
    },
  };
}

export async function call(
  stack: ContractStack,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** The contract and sha of a handler source, by the real analyser. */
export async function contractOf(source: string): Promise<{ contract: Contract; sha: string }> {
  const dir = await tempDir("contract-src");
  try {
    const { writeFile } = await import("node:fs/promises");
    await writeFile(`${dir.path}/handler.ts`, source);
    const r = await analyseHandler(`${dir.path}/handler.ts`);
    return { contract: r.contract, sha: r.contractSha };
  } finally {
    await dir.remove();
  }
}

export async function auditActions(stack: ContractStack): Promise<{ action: string; text: string }[]> {
  const rows = await stack.node
    .store!.db.selectFrom("audit_events")
    .selectAll()
    .orderBy("seq", "asc")
    .execute();
  return rows.map((r) => ({ action: r.action, text: JSON.stringify(r) }));
}
