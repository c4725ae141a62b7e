/**
 * A node for handler-deploy tests: the node key, tenant tokens for acme and globex, optional
 * short plan/session lifetimes, and helpers to call the review API and read the audit chain.
 */
import { generateKeyPairSync } from "node:crypto";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { analyseHandler } from "../../src/contract/analyse.js";
import type { Contract } from "../../src/contract/types.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import { tempDir } from "./tools.js";

export const CONTRACT_NODE_KEY = "contract-node-key-0123456789abcdef";

export interface ContractStack {
  node: RunningNode;
  url: string;
  acme: string;
  globex: string;
  close(): Promise<void>;
}

export async function startContractStack(
  opts: { planTtlMs?: number; sessionTtlMs?: number; supervisorKey?: string; fakeSupervisor?: boolean } = {},
): Promise<ContractStack> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const key: SigningKey = {
    privateKey,
    publicKey,
    kid: await calculateJwkThumbprint(await exportJWK(publicKey)),
  };
  const data = await tempDir("contract-node");
  const node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: CONTRACT_NODE_KEY,
    dataDir: data.path,
    ...(opts.supervisorKey ? { deploy: { supervisorKey: opts.supervisorKey } } : {}),
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
    acme: await issueTenantToken(key, { tenant: "acme", subject: "dev", ttlSeconds: 600 }),
    globex: await issueTenantToken(key, { tenant: "globex", subject: "dev", ttlSeconds: 600 }),
    close: async () => {
      await node.close();
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
