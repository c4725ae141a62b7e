import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { type RunningNode, startNode } from "../../src/node/index.js";

/** A node with a store, two tenants' apps and tokens for each: what the MCP tests drive. */
export interface McpNode {
  node: RunningNode;
  nodeKey: string;
  acmeToken: string;
  otherToken: string;
}

export const MCP_NODE_KEY = "mcp-node-key-0123456789abcdefghij";

export async function startMcpNode(): Promise<McpNode> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const key: SigningKey = {
    privateKey,
    publicKey,
    kid: await calculateJwkThumbprint(await exportJWK(publicKey)),
  };
  const node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: MCP_NODE_KEY,
    dataDir: mkdtempSync(join(tmpdir(), "tbf-mcp-")),
    deviceLogin: { issueTenantToken: (opts) => issueTenantToken(key, opts) },
    registry: {
      allowedServers: ["edge-1"],
      verifyTenantToken: (t) => verifyTenantToken(key, t),
      seedApps: [
        { name: "acme-web", tenant: "acme", servers: ["edge-1"] },
        { name: "other-web", tenant: "other", servers: ["edge-1"] },
      ],
    },
  });
  return {
    node,
    nodeKey: MCP_NODE_KEY,
    acmeToken: await issueTenantToken(key, { tenant: "acme", subject: "agent", ttlSeconds: 600 }),
    otherToken: await issueTenantToken(key, { tenant: "other", subject: "agent", ttlSeconds: 600 }),
  };
}

/** The SDK's own client, connected to the node's `/mcp` with a bearer credential. */
export async function mcpClient(url: string, token: string): Promise<Client> {
  const client = new Client({ name: "tabbify-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

/** The text of a tool result's first content item. */
export function resultText(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content[0]?.text ?? "";
}
