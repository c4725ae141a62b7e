// Shared helpers of the registry tests: an in-process registry on a temp dir and tiny /v2 clients.

import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadOrCreateSigningKey, type SigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { issueTenantToken } from "../src/auth/tenant-token.js";
import { type StartRegistryOptions, startRegistry } from "../src/registry/index.js";

export interface TestRegistry {
  url: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startTestRegistry(opts: Partial<StartRegistryOptions> = {}): Promise<TestRegistry> {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-test-"));
  const registry = await startRegistry({ dataDir, host: "127.0.0.1", port: 0, ...opts });
  return {
    url: registry.url,
    dataDir,
    async close() {
      await registry.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface TestAuth {
  url: string;
  dataDir: string;
  key: SigningKey;
  /** Requests the auth service has answered so far. */
  calls(): number;
  /** A tenant JWT signed by this auth service. */
  jwt(tenant: string, opts?: { subject?: string; ttlSeconds?: number }): Promise<string>;
  close(): Promise<void>;
}

/** A real auth service (`buildAuthApp`) in-process, on a free port and a temp data dir. */
export async function startTestAuth(): Promise<TestAuth> {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-test-auth-"));
  const key = await loadOrCreateSigningKey(dataDir);
  const app = buildAuthApp({ key });
  let calls = 0;
  app.addHook("onRequest", async () => {
    calls++;
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    dataDir,
    key,
    calls: () => calls,
    jwt: (tenant, opts = {}) =>
      issueTenantToken(key, {
        tenant,
        subject: opts.subject ?? "alice",
        ttlSeconds: opts.ttlSeconds ?? 3600,
      }),
    async close() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function basicAuth(password: string): string {
  return `Basic ${Buffer.from(`x:${password}`).toString("base64")}`;
}

/** A registry token for `scopes`, got from the registry's /auth/token as docker gets one. */
export async function registryToken(base: string, jwt: string, scopes: string[] = []): Promise<string> {
  const query = new URLSearchParams({ service: "tabbify-registry" });
  for (const scope of scopes) query.append("scope", scope);
  const r = await call(base, `/auth/token?${query}`, { headers: { authorization: basicAuth(jwt) } });
  if (r.status !== 200) throw new Error(`/auth/token: ${r.status} ${r.body.toString()}`);
  return (r.json() as { token: string }).token;
}

/** `{authorization: "Bearer …"}` for a registry token of `scopes`. */
export async function bearerFor(base: string, jwt: string, scopes: string[]): Promise<Headers> {
  return { authorization: `Bearer ${await registryToken(base, jwt, scopes)}` };
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function sha512(data: Buffer | string): string {
  return `sha512:${createHash("sha512").update(data).digest("hex")}`;
}

export type Headers = Record<string, string>;

export async function call(
  base: string,
  path: string,
  init: { method?: string; body?: Buffer | string; headers?: Headers } = {},
): Promise<{ status: number; headers: globalThis.Headers; body: Buffer; json: () => unknown }> {
  const res = await fetch(new URL(path, base), {
    method: init.method ?? "GET",
    ...(init.body !== undefined ? { body: init.body } : {}),
    headers: init.headers ?? {},
    redirect: "manual",
  });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body.toString("utf8")) };
}

/** The OCI error code of a reply body. */
export function errorCode(reply: { json: () => unknown }): string | undefined {
  return (reply.json() as { errors?: { code: string }[] }).errors?.[0]?.code;
}

/**
 * Pushes a blob with a single POST ?digest= and returns its digest. A registry that answers 202
 * (single-request push is optional in the spec; docker-registry 2.8 does so) gets the body in a
 * PUT to the session, as clients do.
 */
export async function pushBlob(
  base: string,
  name: string,
  data: Buffer | string,
  headers: Headers = {},
): Promise<string> {
  const digest = sha256(data);
  let r = await call(base, `/v2/${name}/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: data,
    headers: { "content-type": "application/octet-stream", ...headers },
  });
  if (r.status === 202) {
    const location = new URL(r.headers.get("location")!, base);
    location.searchParams.set("digest", digest);
    r = await call(base, `${location.pathname}${location.search}`, {
      method: "PUT",
      body: data,
      headers: { "content-type": "application/octet-stream", ...headers },
    });
  }
  if (r.status !== 201) throw new Error(`push blob to ${name}: ${r.status} ${r.body.toString()}`);
  return digest;
}

export const ociManifestType = "application/vnd.oci.image.manifest.v1+json";
export const ociIndexType = "application/vnd.oci.image.index.v1+json";
export const emptyConfig = Buffer.from("{}");

/** An OCI image manifest over already-pushed blobs. */
export function imageManifest(
  config: { digest: string; size: number; mediaType?: string },
  layers: { digest: string; size: number; mediaType?: string }[],
  extra: Record<string, unknown> = {},
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestType,
      config: { mediaType: config.mediaType ?? "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({
        mediaType: l.mediaType ?? "application/vnd.oci.image.layer.v1.tar",
        ...l,
      })),
      ...extra,
    }),
  );
}

/** Pushes config + one layer + manifest under `ref`; returns the manifest digest and bytes. */
export async function pushImage(
  base: string,
  name: string,
  ref: string,
  opts: { layer?: Buffer; extra?: Record<string, unknown>; headers?: Headers; configType?: string } = {},
): Promise<{ digest: string; manifest: Buffer; layerDigest: string }> {
  const layer = opts.layer ?? Buffer.from(`layer of ${name}:${ref}`);
  const configDigest = await pushBlob(base, name, emptyConfig, opts.headers);
  const layerDigest = await pushBlob(base, name, layer, opts.headers);
  const manifest = imageManifest(
    {
      digest: configDigest,
      size: emptyConfig.length,
      ...(opts.configType ? { mediaType: opts.configType } : {}),
    },
    [{ digest: layerDigest, size: layer.length }],
    opts.extra,
  );
  const r = await call(base, `/v2/${name}/manifests/${ref}`, {
    method: "PUT",
    body: manifest,
    headers: { "content-type": ociManifestType, ...opts.headers },
  });
  if (r.status !== 201) throw new Error(`push manifest ${name}:${ref}: ${r.status} ${r.body.toString()}`);
  return { digest: sha256(manifest), manifest, layerDigest };
}

/** A request whose path is sent byte for byte (fetch would normalise `..` and `//` away). */
export function rawCall(
  base: string,
  method: string,
  path: string,
  body?: Buffer | string,
  headers: Headers = {},
): Promise<{ status: number; body: Buffer; json: () => unknown }> {
  const target = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method,
        path,
        headers: { "content-type": "application/octet-stream", ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const buf = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, body: buf, json: () => JSON.parse(buf.toString("utf8")) });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export interface SpawnedRegistry {
  url: string;
  pid: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout/stderr so far. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `node dist/src/main/tabbify.js registry` on a free port and waits for its URL line. */
export async function spawnRegistry(
  dataDir: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<SpawnedRegistry> {
  const entry = fileURLToPath(new URL("../src/main/tabbify.js", import.meta.url));
  const child = spawn(
    process.execPath,
    [entry, "registry", "--listen", "127.0.0.1:0", "--data", dataDir, ...extraArgs],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, REGISTRY_AUTH_URL: "", ...env },
    },
  );
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`registry did not start:\n${output}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`registry exited (${code}) before listening:\n${output}`));
    });
  });
  return {
    url,
    pid: child.pid!,
    child,
    output: () => output,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Peak VmRSS (bytes) of a process, sampled every `everyMs` until `stop()`. */
export function sampleRss(pid: number, everyMs = 50): { stop(): number } {
  let peak = 0;
  const sample = () => {
    try {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {
      // the process is gone; keep the peak seen
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** Deterministic content: `mib` MiB of a fixed pattern, as 1 MiB buffers (never whole in memory). */
export function* patternChunks(mib: number, seed = 1): Generator<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + seed * 7) % 251;
  for (let i = 0; i < mib; i++) {
    chunk.writeUInt32BE(i, 0); // every MiB differs, so a misplaced chunk changes the digest
    yield chunk;
  }
}

/** Streams chunks as one request body with backpressure; resolves with the reply. */
export function streamRequest(
  base: string,
  method: string,
  path: string,
  chunks: Iterable<Buffer>,
  opts: { headers?: Record<string, string>; onChunk?: (c: Buffer) => void; signal?: AbortSignal } = {},
): Promise<{ status: number; headers: import("node:http").IncomingHttpHeaders; body: string }> {
  const target = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method,
        path: `${target.pathname}${target.search}`,
        headers: { "content-type": "application/octet-stream", ...opts.headers },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const it = chunks[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = it.next();
        if (next.done) {
          req.end();
          return;
        }
        opts.onChunk?.(next.value);
        if (!req.write(next.value)) {
          req.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
}

/** GETs a path and hashes the body as it streams; resolves with status, length and sha256 digest. */
export function streamDigest(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; size: number; digest: string }> {
  const target = new URL(path, base);
  return new Promise((resolve, reject) => {
    http
      .get({ host: target.hostname, port: target.port, path: target.pathname, headers }, (res) => {
        const hash = createHash("sha256");
        let size = 0;
        res.on("data", (c: Buffer) => {
          hash.update(c);
          size += c.length;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, size, digest: `sha256:${hash.digest("hex")}` }),
        );
        res.on("error", reject);
      })
      .on("error", reject);
  });
}
