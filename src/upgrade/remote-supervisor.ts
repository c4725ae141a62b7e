/**
 * A supervisor on another host, as `tabbify up` hands it over: nobody there holds its socket for
 * it, so it replaces itself (supervisor-handoff.ts) when asked over its API with the supervisors'
 * key. `up` then checks from outside that its port answers with the new version and ready, so
 * the old process never vouches for its successor. It keeps the releases it ran, so handing it
 * back needs only the version; the tarball goes along when it does not have the one asked for.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import { TabbifyError } from "../core/errors.js";
import { waitVersionReady } from "./handoff-probe.js";
import type { HandoffRole, HandoffTimes } from "./up-control.js";

/** The old process has already seen its successor ready; this only confirms it from outside. */
const confirmTimeoutMs = 30_000;

export class RemoteSupervisor implements HandoffRole {
  #version: string;

  private constructor(
    readonly name: string,
    private readonly address: URL,
    private readonly key: string,
    private readonly tarball: string | undefined,
    version: string,
  ) {
    this.#version = version;
  }

  /** The supervisor at `address`, with the version it answers now. */
  static async reach(
    name: string,
    address: string,
    key: string,
    tarball?: string,
  ): Promise<RemoteSupervisor> {
    const url = new URL(address);
    const res = await fetch(new URL("/api/version", url), { signal: AbortSignal.timeout(10_000) });
    const version = ((await res.json()) as { version?: unknown }).version;
    if (res.status !== 200 || typeof version !== "string")
      throw new TabbifyError("ROLE_NOT_READY", `${name} at ${address} does not say its version`);
    return new RemoteSupervisor(name, url, key, tarball, version);
  }

  /** The version it runs: what a revert hands it back to. */
  get entry(): string {
    return this.#version;
  }

  get #host(): string {
    return this.address.hostname.replace(/^\[|\]$/g, "");
  }

  async #ask(body: { version: string } | { tarball: string }, timeoutMs: number): Promise<Response> {
    const headers = { authorization: `Bearer ${this.key}` };
    const signal = AbortSignal.timeout(timeoutMs);
    const url = new URL("/v1/platform/handoff", this.address);
    if ("version" in body) {
      return fetch(url, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal,
      });
    }
    return fetch(url, {
      method: "POST",
      headers: {
        ...headers,
        "content-type": "application/octet-stream",
        "content-length": String((await stat(body.tarball)).size),
      },
      body: Readable.toWeb(createReadStream(body.tarball)) as ReadableStream,
      duplex: "half",
      signal,
    } as RequestInit);
  }

  async handoff(_entry: string, version: string, timeoutMs: number): Promise<HandoffTimes> {
    const begun = Date.now();
    // Unpacking and the self-check come on top of the new process's start.
    const askMs = timeoutMs + 120_000;
    let res = await this.#ask({ version }, askMs);
    if (res.status === 404 && this.tarball) {
      await res.body?.cancel();
      res = await this.#ask({ tarball: this.tarball }, askMs);
    }
    const answer = (await res.json().catch(() => ({}))) as { error?: string; ready_ms?: number };
    if (res.status !== 200) {
      throw new TabbifyError(
        "ROLE_NOT_READY",
        `${this.name} ${version}: ${answer.error ?? `HTTP ${res.status}`}`,
      );
    }
    try {
      await waitVersionReady(
        this.#host,
        Number(this.address.port),
        version,
        confirmTimeoutMs,
        () => undefined,
      );
    } catch (err) {
      throw new TabbifyError(
        "ROLE_NOT_READY",
        `${this.name} said it runs ${version}, but its port does not: ${(err as Error).message}`,
      );
    }
    this.#version = version;
    const totalMs = Date.now() - begun;
    return { readyMs: answer.ready_ms ?? totalMs, totalMs };
  }
}
