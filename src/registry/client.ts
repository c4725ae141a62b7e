import { createHash } from "node:crypto";
import { TabbifyError } from "../core/errors.js";
import { type StreamedBody, streamedInit } from "../core/streamed-body.js";

/**
 * The typed client of the platform registry, for every other component that talks to it (the
 * node's release artifacts, signatures and catalog, the supervisor's handler pulls): the OCI
 * distribution API (`/v2/<name>/…`, described by the OCI distribution spec, not by OpenAPI:
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md), Docker's token
 * endpoint (`/auth/token`) and the probes (`/api/healthz`). The paths are built here only.
 *
 * Every call sends the bearer token given at construction; it never appears in an error. Errors
 * are TabbifyErrors with stable codes:
 *
 *   REGISTRY_UNREACHABLE       no answer (refused, reset, timed out)
 *   REGISTRY_ANSWER_TOO_LARGE  a document longer than the caller accepts
 *   <failure>                  an answer the spec does not give for success, naming the method,
 *                              path and status; the caller chooses the code (REGISTRY_PUSH_FAILED,
 *                              IMAGE_PULL_FAILED, SIGNATURE_INVALID…), default REGISTRY_REFUSED
 */

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** `GET /v2/<name>/referrers/<digest>`: an OCI image index of the referrers. */
export interface ReferrersIndex {
  manifests?: Array<{
    digest: string;
    mediaType?: string;
    artifactType?: string;
    size?: number;
    annotations?: Record<string, string>;
  }>;
}

/** `GET /auth/token` (Docker's token protocol). */
export interface TokenAnswer {
  token?: unknown;
  access_token?: unknown;
}

export interface RegistryClientOptions {
  /** `http(s)://host[:port]`. */
  url: string;
  /** Sent as `Authorization: Bearer`. */
  token?: string | undefined;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
  /** The code of a refused call. Default REGISTRY_REFUSED. */
  failure?: string;
}

export interface RegistrySendOptions {
  accept?: string;
  body?: Uint8Array | StreamedBody;
  /** With a `Uint8Array` body. */
  contentType?: string;
  /** Replaces the bearer token (the token endpoint's Basic credential). */
  authorization?: string;
  timeoutMs?: number;
}

/** The spec answers 201 (a manifest, a finished upload) or 202 (an upload begun); any 2xx is taken. */
const WRITTEN = [200, 201, 202, 204];

export const sha256Digest = (bytes: Uint8Array): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

export class RegistryClient {
  readonly base: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly failure: string;

  constructor(opts: RegistryClientOptions) {
    this.base = opts.url.replace(/\/+$/, "");
    this.#token = opts.token;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.failure = opts.failure ?? "REGISTRY_REFUSED";
  }

  /** The same registry and token, refusals thrown with `failure`. */
  failingWith(failure: string): RegistryClient {
    return new RegistryClient({
      url: this.base,
      token: this.#token,
      timeoutMs: this.#timeoutMs,
      failure,
    });
  }

  /** One call (`path` absolute or from the base): the answer whatever its status. */
  async send(method: string, path: string, opts: RegistrySendOptions = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (opts.accept) headers.accept = opts.accept;
    const authorization = opts.authorization ?? (this.#token ? `Bearer ${this.#token}` : undefined);
    if (authorization) headers.authorization = authorization;
    let init: RequestInit & { duplex?: "half" } = {
      method,
      headers,
      signal: AbortSignal.timeout(opts.timeoutMs ?? this.#timeoutMs),
    };
    if (opts.body instanceof Uint8Array) {
      headers["content-type"] = opts.contentType ?? "application/octet-stream";
      init.body = opts.body;
    } else if (opts.body) {
      init = { ...init, ...streamedInit(opts.body, headers) };
    }
    const url = /^https?:\/\//.test(path) ? path : `${this.base}${path}`;
    try {
      return await fetch(url, init);
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      throw new TabbifyError("REGISTRY_UNREACHABLE", `registry at ${this.base} unreachable (${cause})`);
    }
  }

  /** The caller's `failure`, naming the call and the registry's answer (its first 300 bytes). */
  async refusal(res: Response, method: string, path: string): Promise<TabbifyError> {
    const text = (await res.text().catch(() => "")).slice(0, 300);
    const where = new URL(path, `${this.base}/`).pathname;
    return new TabbifyError(this.failure, `${method} ${where}: HTTP ${res.status}${text ? ` ${text}` : ""}`, {
      status: res.status,
    });
  }

  /** `GET /api/healthz`: resolves when the registry answers 200. */
  async health(timeoutMs?: number): Promise<void> {
    const res = await this.send("GET", "/api/healthz", timeoutMs ? { timeoutMs } : {});
    if (res.status !== 200) throw await this.refusal(res, "GET", "/api/healthz");
    await res.body?.cancel();
  }

  /** `GET /auth/token?service&scope` with a Basic credential: the registry token's answer. */
  async token(
    service: string,
    scope: string,
    basic: { user: string; password: string },
  ): Promise<TokenAnswer> {
    const path = `/auth/token?${new URLSearchParams({ service, scope })}`;
    const credential = Buffer.from(`${basic.user}:${basic.password}`).toString("base64");
    const res = await this.send("GET", path, { authorization: `Basic ${credential}`, timeoutMs: 15_000 });
    // The query names the scope, not a secret; the refusal says only the path.
    if (res.status !== 200) throw await this.refusal(res, "GET", "/auth/token");
    return (await res.json()) as TokenAnswer;
  }

  repository(name: string): OciRepository {
    return new OciRepository(this, name);
  }
}

/** One repository's `/v2/<name>/…` routes. */
export class OciRepository {
  constructor(
    readonly registry: RegistryClient,
    readonly name: string,
  ) {}

  get #prefix(): string {
    return `/v2/${this.name}`;
  }

  async #call(method: string, path: string, opts: RegistrySendOptions, ok: number[]): Promise<Response> {
    const res = await this.registry.send(method, path, opts);
    if (!ok.includes(res.status)) throw await this.registry.refusal(res, method, path);
    return res;
  }

  /** `HEAD /manifests/<reference>`: the manifest's descriptor, or undefined when it is not there. */
  async describeManifest(reference: string, accept: string): Promise<Descriptor | undefined> {
    const path = `${this.#prefix}/manifests/${encodeURIComponent(reference).replace(/%3A/g, ":")}`;
    const res = await this.#call("HEAD", path, { accept }, [200, 404]);
    if (res.status === 404) return undefined;
    return {
      mediaType: res.headers.get("content-type") ?? accept.split(",")[0]!.trim(),
      digest: res.headers.get("docker-content-digest") ?? reference,
      size: Number(res.headers.get("content-length") ?? "0"),
    };
  }

  /**
   * `GET /manifests/<reference>`: its bytes, or undefined when it is not there. Longer than
   * `maxBytes` (declared or read) is REGISTRY_ANSWER_TOO_LARGE.
   */
  async manifest(reference: string, accept: string, maxBytes: number): Promise<Buffer | undefined> {
    const path = `${this.#prefix}/manifests/${encodeURIComponent(reference).replace(/%3A/g, ":")}`;
    const res = await this.#call("GET", path, { accept }, [200, 404]);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return readCapped(res, maxBytes, `${this.name}:${reference}`);
  }

  /** `PUT /manifests/<reference>` (a tag, or the digest); returns the digest of `bytes`. */
  async putManifest(reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    const digest = sha256Digest(bytes);
    const path = `${this.#prefix}/manifests/${reference === "" ? digest : reference}`;
    const res = await this.#call("PUT", path, { body: bytes, contentType: mediaType }, WRITTEN);
    await res.body?.cancel();
    const stored = res.headers.get("docker-content-digest");
    if (stored && stored !== digest)
      throw new TabbifyError(this.registry.failure, `the registry stored ${stored}, not ${digest}`);
    return digest;
  }

  /** `HEAD /blobs/<digest>`. */
  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.#call("HEAD", `${this.#prefix}/blobs/${digest}`, {}, [200, 404]);
    return res.status === 200;
  }

  /**
   * A blob unless the registry has it: `POST /blobs/uploads/`, then one `PUT <location>?digest=`
   * with the body (streamed when it is a StreamedBody). The registry checks the digest.
   */
  async pushBlob(digest: string, body: Uint8Array | (() => Promise<StreamedBody>)): Promise<void> {
    if (await this.hasBlob(digest)) return;
    const started = await this.#call("POST", `${this.#prefix}/blobs/uploads/`, {}, WRITTEN);
    await started.body?.cancel();
    const location = new URL(started.headers.get("location") ?? "", `${this.registry.base}${this.#prefix}/`);
    location.searchParams.set("digest", digest);
    const put = await this.#call(
      "PUT",
      location.toString(),
      { body: body instanceof Uint8Array ? body : await body(), timeoutMs: 120_000 },
      WRITTEN,
    );
    await put.body?.cancel();
  }

  /** `GET /blobs/<digest>` as a stream, or undefined when it is not there. */
  async blob(digest: string, timeoutMs?: number): Promise<ReadableStream<Uint8Array> | undefined> {
    const res = await this.#call(
      "GET",
      `${this.#prefix}/blobs/${digest}`,
      timeoutMs ? { timeoutMs } : {},
      [200, 404],
    );
    if (res.status === 404 || !res.body) {
      await res.body?.cancel();
      return undefined;
    }
    return res.body;
  }

  /** A small blob's bytes (at most `maxBytes`), or undefined when it is not there. */
  async smallBlob(digest: string, maxBytes: number): Promise<Buffer | undefined> {
    const res = await this.#call("GET", `${this.#prefix}/blobs/${digest}`, {}, [200, 404]);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return readCapped(res, maxBytes, `${this.name}@${digest}`);
  }

  /** `GET /tags/list`: the tags, or undefined when the repository is not there. */
  async tags(): Promise<string[] | undefined> {
    const res = await this.#call(
      "GET",
      `${this.#prefix}/tags/list`,
      { accept: "application/json" },
      [200, 404],
    );
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    return ((await res.json()) as { tags?: string[] | null }).tags ?? [];
  }

  /**
   * `GET /referrers/<digest>[?artifactType=]`: the manifests naming `digest` as their subject
   * (an index longer than `maxBytes` is REGISTRY_ANSWER_TOO_LARGE); undefined when the registry
   * has no such repository.
   */
  async referrers(
    digest: string,
    artifactType?: string,
    maxBytes = 4 * 1024 * 1024,
  ): Promise<ReferrersIndex | undefined> {
    const query = artifactType ? `?${new URLSearchParams({ artifactType })}` : "";
    const res = await this.#call(
      "GET",
      `${this.#prefix}/referrers/${digest}${query}`,
      { accept: "application/vnd.oci.image.index.v1+json" },
      [200, 404],
    );
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    const bytes = await readCapped(res, maxBytes, `the referrers of ${this.name}@${digest}`);
    return JSON.parse(bytes.toString("utf8")) as ReferrersIndex;
  }
}

async function readCapped(res: Response, maxBytes: number, what: string): Promise<Buffer> {
  const tooLarge = () =>
    new TabbifyError("REGISTRY_ANSWER_TOO_LARGE", `${what} is larger than ${maxBytes} bytes`);
  if (Number(res.headers.get("content-length") ?? "0") > maxBytes) {
    await res.body?.cancel();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.length;
      // Leaving the loop cancels the rest of the body.
      if (size > maxBytes) throw tooLarge();
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}
