/** The node's HTTP API as the release tests call it: JSON in and out, with a bearer token. */
import assert from "node:assert/strict";

export type NodeApi = <T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ status: number; json: T }>;

export interface DeployEvent {
  seq: number;
  step: string;
  type: string;
  message?: string;
  data?: Record<string, unknown>;
}

/** Calls `base` with `token`; every answer is parsed as JSON. */
export function nodeApi(base: string, token: string): NodeApi {
  return async <T>(method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as T };
  };
}

/** Every event of a deploy (`GET /v1/deploy/:id/events`, server-sent), in order. */
export async function deployEvents(base: string, token: string, deployId: string): Promise<DeployEvent[]> {
  const res = await fetch(`${base}/v1/deploy/${deployId}/events`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  return (await res.text())
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => JSON.parse(line.slice(5)) as DeployEvent);
}
