import type { MeshRequests } from "../node/schemas/mesh.js";

/** A refusal's message: the node's `{error}`, else the start of the raw answer. */
export function refusalMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    if (typeof parsed.error === "string") return parsed.error;
  } catch {
    // Not JSON: the raw (truncated) text.
  }
  return text.slice(0, 200);
}

/** One server-sent event of `GET /v1/mesh/peers/stream`. */
export interface MeshStreamEvent {
  event: string;
  /** The event's JSON text. */
  data: string;
}

/**
 * The mesh joiner's typed client for the node's `/v1/mesh` routes: request bodies typed by the
 * route schemas (src/node/schemas/mesh.ts), and the peers stream as events. The join token goes
 * as a bearer token and never into an error; a refusal throws with the node's message and its
 * HTTP status in `status`.
 */
export class MeshApiClient {
  readonly url: string;
  readonly #token: string;
  readonly #timeoutMs: number;

  constructor(url: string, token: string, timeoutMs = 10_000) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
    this.#timeoutMs = timeoutMs;
  }

  /** `timeoutMs` overrides the client's limit for this one call. */
  async post<P extends keyof MeshRequests>(
    path: P,
    body: MeshRequests[P],
    timeoutMs = this.#timeoutMs,
  ): Promise<unknown> {
    const res = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (!res.ok) {
      throw Object.assign(new Error(`${path}: ${res.status} ${refusalMessage(text)}`), {
        status: res.status,
      });
    }
    return JSON.parse(text);
  }

  /**
   * `GET /v1/mesh/peers/stream`, event by event, until the node ends it or `signal` aborts; the
   * body is read as it arrives, never whole.
   */
  async *peerEvents(signal: AbortSignal): AsyncGenerator<MeshStreamEvent> {
    const res = await fetch(`${this.url}/v1/mesh/peers/stream`, {
      headers: { authorization: `Bearer ${this.#token}` },
      signal,
    });
    if (!res.ok || !res.body) throw new Error(`peers stream answered ${res.status}`);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut = buffer.indexOf("\n\n");
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf("\n\n");
        const event = /^event: (\S+)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) yield { event, data };
      }
    }
  }
}
