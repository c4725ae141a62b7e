import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListToolsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { CallerResolver } from "./apps-identity.js";
import type { Caller } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import { errorResponses, nodeKeyOrTenant } from "./schemas/common.js";
import { type McpTool, mcpTools, type RestCall } from "./schemas/mcp-tools.js";
import { nodeVersion } from "./version.js";

/**
 * `POST /mcp`: the Model Context Protocol over Streamable HTTP (stateless: one server per
 * request, no session), so agents can drive the node. The caller authenticates like on REST
 * (node key, or a tenant token) before the body is read. Each tool is one REST route called on
 * the node's own API with the caller's credential, so what a tenant may see and do, and every
 * error, is the REST API's. Each tool call is an audit event `mcp.<tool>` with `via: "mcp"`.
 */

export interface McpRouteOptions {
  callers: CallerResolver;
  audit: AuditLog;
  /** The node's own API base URL (loopback), known once it listens. */
  apiUrl: () => string;
}

/** A log answer is read up to this many bytes: a tail, never a whole log. */
const TEXT_LIMIT = 256 * 1024;

export const mcpSchema = {
  summary: "Model Context Protocol (Streamable HTTP, JSON-RPC 2.0): tools for agents",
  tags: ["mcp"],
  security: nodeKeyOrTenant,
  description:
    "Send JSON-RPC requests (initialize, tools/list, tools/call) with `accept: application/json, text/event-stream`. " +
    `Tools: ${mcpTools.map((t) => t.name).join(", ")}. Each tool is the REST route it names, with the same credential.`,
  response: { 200: Type.Unknown({ description: "JSON-RPC response" }), ...errorResponses },
};

export function registerMcpRoute(app: FastifyInstance, opts: McpRouteOptions): void {
  const callerOf = new WeakMap<FastifyRequest, Caller>();
  const byName = new Map(mcpTools.map((t) => [t.name, t]));
  const toolList = mcpTools.map((t) => ({
    name: t.name,
    description: t.description,
    // TypeBox schemas are JSON Schema; the round trip drops TypeBox's symbol keys.
    inputSchema: JSON.parse(JSON.stringify(t.inputSchema)) as { type: "object" },
  }));

  app.post(
    "/mcp",
    {
      schema: mcpSchema,
      onRequest: async (req) => {
        callerOf.set(req, await opts.callers.resolve(req.headers.authorization));
      },
    },
    async (req, reply) => {
      const caller = callerOf.get(req) as Caller;
      const authorization = req.headers.authorization as string;
      const server = new Server(
        { name: "tabbify-node", version: nodeVersion },
        { capabilities: { tools: {} } },
      );
      server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: toolList }));
      server.setRequestHandler(CallToolRequestSchema, async (request) => {
        const tool = byName.get(request.params.name);
        if (!tool) return failure(`no tool ${request.params.name.slice(0, 64)}`);
        const input = (request.params.arguments ?? {}) as Record<string, unknown>;
        return callTool(tool, input, caller, authorization, opts);
      });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      reply.hijack();
      reply.raw.on("close", () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req.raw, reply.raw, req.body);
    },
  );
}

function failure(text: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text }] };
}

async function callTool(
  tool: McpTool,
  input: Record<string, unknown>,
  caller: Caller,
  authorization: string,
  opts: McpRouteOptions,
): Promise<CallToolResult> {
  const audit = (after: Record<string, unknown>) =>
    opts.audit.record({
      actor: caller.actor,
      action: `mcp.${tool.name}`,
      subject: tool.subject(input),
      after: { via: "mcp", ...after },
    });
  if (!Value.Check(tool.inputSchema, input)) {
    const first = Value.Errors(tool.inputSchema, input).First();
    const why = first
      ? `${first.path || "input"}: ${first.message}`
      : "input does not match the tool's schema";
    await audit({ ok: false, error: "INPUT_INVALID" });
    return failure(`invalid input: ${why}`);
  }
  const call = tool.call(input);
  const answer = await restCall(opts.apiUrl(), call, authorization);
  await audit({ ok: answer.ok, status: answer.status });
  return { isError: !answer.ok, content: [{ type: "text", text: answer.text }] };
}

/** One REST call on the node's own API, as the caller. */
async function restCall(
  base: string,
  call: RestCall,
  authorization: string,
): Promise<{ ok: boolean; status: number; text: string }> {
  const headers: Record<string, string> = { authorization };
  if (call.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${call.path}`, {
    method: call.method,
    headers,
    ...(call.body !== undefined ? { body: JSON.stringify(call.body) } : {}),
    signal: AbortSignal.timeout(120_000),
  });
  const text = call.text ? await readCapped(res) : await res.text();
  return { ok: res.ok, status: res.status, text };
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return "";
  const decoder = new TextDecoder();
  let out = "";
  for await (const chunk of res.body) {
    out += decoder.decode(chunk as Uint8Array, { stream: true });
    if (out.length >= TEXT_LIMIT) {
      await res.body.cancel().catch(() => {});
      return `${out.slice(0, TEXT_LIMIT)}\n… (cut at ${TEXT_LIMIT} bytes)`;
    }
  }
  return out + decoder.decode();
}
