/**
 * A supervisor on another host, as `tabbify up` hands it over: nobody there holds its socket for
 * it, so it replaces itself (supervisor-handoff.ts) when asked over its API with the supervisors'
 * key. `up` then checks from outside that its port answers with the new version and ready, so
 * the old process never vouches for its successor. It keeps the releases it ran, so handing it
 * back needs only the version; the tarball goes along when it does not have the one asked for.
 */
import { TabbifyError } from "../core/errors.js";
import { fileBody } from "../core/file-body.js";
import { SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import { waitVersionReady } from "./handoff-probe.js";
import type { HandoffRole, HandoffTimes } from "./up-control.js";

/** The old process has already seen its successor ready; this only confirms it from outside. */
const confirmTimeoutMs = 30_000;

export class RemoteSupervisor implements HandoffRole {
  #version: string;

  private constructor(
    readonly name: string,
    private readonly address: URL,
    private readonly api: SupervisorApi,
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
    const api = new SupervisorApi({ baseUrl: url.origin, authToken: key });
    let version: unknown;
    try {
      version = (await api.version({ timeoutMs: 10_000 })).version;
    } catch (err) {
      throw new TabbifyError("ROLE_NOT_READY", `${name} at ${address}: ${(err as Error).message}`);
    }
    if (typeof version !== "string")
      throw new TabbifyError("ROLE_NOT_READY", `${name} at ${address} does not say its version`);
    return new RemoteSupervisor(name, url, api, tarball, version);
  }

  /** The version it runs: what a revert hands it back to. */
  get entry(): string {
    return this.#version;
  }

  get #host(): string {
    return this.address.hostname.replace(/^\[|\]$/g, "");
  }

  /** The release by version; with the tarball, streamed, when this host did not keep it (404). */
  async #ask(version: string, timeoutMs: number): ReturnType<SupervisorApi["handoff"]> {
    try {
      return await this.api.handoff({ version }, { timeoutMs });
    } catch (err) {
      if (supervisorRefusal(err)?.status !== 404 || !this.tarball) throw err;
    }
    return this.api.handoff({ tarball: await fileBody(this.tarball) }, { timeoutMs });
  }

  async handoff(_entry: string, version: string, timeoutMs: number): Promise<HandoffTimes> {
    const begun = Date.now();
    // Unpacking and the self-check come on top of the new process's start.
    const askMs = timeoutMs + 120_000;
    let answer: Awaited<ReturnType<SupervisorApi["handoff"]>>;
    try {
      answer = await this.#ask(version, askMs);
    } catch (err) {
      // The supervisor's own error (SUPERVISOR_REFUSED) or why it could not be reached.
      throw new TabbifyError("ROLE_NOT_READY", `${this.name} ${version}: ${(err as Error).message}`);
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
