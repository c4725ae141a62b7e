import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { backoffDelay } from "../core/backoff.js";
import { type Logger, silentLogger } from "../core/log.js";

/**
 * Distribution's notifications (docs: "Work with notifications"): each manifest push and delete
 * becomes an event in an envelope of media type `application/vnd.docker.distribution.events.v1+json`,
 * POSTed to every configured endpoint. Unlike Distribution's in-memory queue, each endpoint's queue
 * is a directory of one file per event under the registry's data dir, written (fsync + rename)
 * before the push is answered, and deleted only once the endpoint answered 2xx. So a registry
 * restart or an endpoint down for hours loses nothing, and events go out oldest first, one batch
 * at a time, with exponential backoff between failed attempts.
 */

export const eventsMediaType = "application/vnd.docker.distribution.events.v1+json";

export interface NotifyEndpoint {
  url: string;
  /** Sent as `Authorization: Bearer <token>`; never logged. */
  token?: string;
}

export interface RegistryEvent {
  id: string;
  timestamp: string;
  action: "push" | "delete";
  target: {
    mediaType?: string;
    digest: string;
    size?: number;
    length?: number;
    repository: string;
    url?: string;
    tag?: string;
  };
  request: { id: string; addr: string; host: string; method: string; useragent: string };
  actor: { name?: string };
  source: { addr: string; instanceID: string };
}

export interface NotifierOptions {
  /** Queues live in `<dir>/<endpoint hash>/`. */
  dir: string;
  endpoints: readonly NotifyEndpoint[];
  log?: Logger;
  /** First retry delay; doubles per failure up to `maxBackoffMs`. Default 500 ms. */
  minBackoffMs?: number;
  /** Default 30 s. */
  maxBackoffMs?: number;
  /** Events per POST. Default 50. */
  batch?: number;
}

const queueFile = /^\d{16}\.json$/;

class EndpointQueue {
  #seq = 0;
  #wake: (() => void) | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    readonly endpoint: NotifyEndpoint,
    private readonly opts: Required<Omit<NotifierOptions, "dir" | "endpoints">>,
  ) {}

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const pending = await this.pending();
    this.#seq = pending.length > 0 ? Number(pending.at(-1)!.slice(0, 16)) : 0;
    this.#loop = this.run();
  }

  async pending(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => queueFile.test(n)).sort();
  }

  /** Durable before it resolves: written to a dot-file, fsynced, renamed into the queue. */
  async enqueue(event: RegistryEvent): Promise<void> {
    this.#seq += 1;
    const name = `${String(this.#seq).padStart(16, "0")}.json`;
    const tmp = join(this.dir, `.${name}.${process.pid}`);
    const handle = await open(tmp, "wx", 0o600);
    try {
      await handle.writeFile(JSON.stringify(event));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, join(this.dir, name));
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      const names = (await this.pending()).slice(0, this.opts.batch);
      if (names.length === 0) {
        await this.sleep(60_000);
        continue;
      }
      const events: unknown[] = [];
      for (const name of names) events.push(JSON.parse(await readFile(join(this.dir, name), "utf8")));
      const delivered = await this.deliver(events);
      if (delivered) {
        for (const name of names) await unlink(join(this.dir, name));
        failures = 0;
      } else {
        failures += 1;
        await this.sleep(backoffDelay(failures, this.opts.minBackoffMs, this.opts.maxBackoffMs));
      }
    }
  }

  private async deliver(events: unknown[]): Promise<boolean> {
    try {
      const res = await fetch(this.endpoint.url, {
        method: "POST",
        headers: {
          "content-type": eventsMediaType,
          ...(this.endpoint.token ? { authorization: `Bearer ${this.endpoint.token}` } : {}),
        },
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(15_000),
      });
      await res.body?.cancel();
      if (res.status >= 200 && res.status < 300) return true;
      this.opts.log.warn("notification endpoint refused events; will retry", {
        endpoint: redactedUrl(this.endpoint.url),
        status: res.status,
      });
    } catch (err) {
      this.opts.log.warn("notification endpoint unreachable; will retry", {
        endpoint: redactedUrl(this.endpoint.url),
        error: err instanceof Error ? err.message : String(err),
      });
    }
    return false;
  }
}

function redactedUrl(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  u.search = "";
  return u.toString();
}

export class Notifier {
  readonly instanceId = randomUUID();
  readonly #queues: EndpointQueue[];

  private constructor(queues: EndpointQueue[]) {
    this.#queues = queues;
  }

  static async open(opts: NotifierOptions): Promise<Notifier> {
    const settings = {
      log: opts.log ?? silentLogger,
      minBackoffMs: opts.minBackoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 30_000,
      batch: opts.batch ?? 50,
    };
    const queues = opts.endpoints.map((endpoint) => {
      new URL(endpoint.url);
      const key = createHash("sha256").update(endpoint.url).digest("hex").slice(0, 16);
      return new EndpointQueue(join(opts.dir, key), endpoint, settings);
    });
    for (const q of queues) await q.start();
    return new Notifier(queues);
  }

  /** Queues the event for every endpoint; resolves once it is on disk for each. */
  async publish(
    event: Omit<RegistryEvent, "id" | "timestamp" | "source">,
    sourceAddr: string,
  ): Promise<void> {
    const full: RegistryEvent = {
      id: randomUUID(),
      timestamp: new Date().toISOString(),
      ...event,
      source: { addr: sourceAddr, instanceID: this.instanceId },
    };
    for (const q of this.#queues) await q.enqueue(full);
  }

  /** Events not yet delivered, per endpoint URL. */
  async backlog(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const q of this.#queues) out[q.endpoint.url] = (await q.pending()).length;
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.#queues.map((q) => q.stop()));
  }
}

export function isDigestReference(reference: string): boolean {
  return reference.includes(":");
}

/** A request as a notification's `request` and `actor` carry it (the actor is the token's subject). */
export function manifestEvent(
  request: {
    id: string;
    ip: string;
    method: string;
    protocol: string;
    headers: { host?: string; "user-agent"?: string };
  },
  identity: { subject: string } | undefined,
  action: RegistryEvent["action"],
  repository: string,
  digest: string,
  extra: { mediaType?: string; size?: number; tag?: string },
): Omit<RegistryEvent, "id" | "timestamp" | "source"> {
  const host = request.headers.host ?? "";
  return {
    action,
    target: {
      ...(extra.mediaType !== undefined ? { mediaType: extra.mediaType } : {}),
      digest,
      ...(extra.size !== undefined ? { size: extra.size, length: extra.size } : {}),
      repository,
      url: `${request.protocol}://${host}/v2/${repository}/manifests/${digest}`,
      ...(extra.tag !== undefined ? { tag: extra.tag } : {}),
    },
    request: {
      id: String(request.id),
      addr: request.ip,
      host,
      method: request.method,
      useragent: String(request.headers["user-agent"] ?? "").slice(0, 300),
    },
    actor: identity ? { name: identity.subject } : {},
  };
}
