import type { Logger } from "../core/log.js";
import { NodeClient } from "../node/client.js";

/**
 * The env a workload gets from the node (`tcli env set`), asked for at each spawn and swap with
 * the supervisors' key. Values live in this process's memory only: never in a runner record, a
 * log line or argv; they reach the runner in its launch line or control message, and from there
 * the workload's environment. When the node cannot answer, the last values seen are used (a crash
 * restart must not lose them while the node is down); with none seen, the app starts without.
 */
export class SecretEnvSource {
  readonly #node: NodeClient;
  readonly #logger: Logger;
  readonly #last = new Map<string, Record<string, string>>();

  constructor(opts: { nodeUrl: string; apiKey: string; logger: Logger }) {
    this.#node = new NodeClient({ url: opts.nodeUrl, token: opts.apiKey, timeoutMs: 5_000 });
    this.#logger = opts.logger;
  }

  async envFor(uuid: string): Promise<Record<string, string>> {
    try {
      const body = await this.#node.supervisorEnv(uuid);
      const env: Record<string, string> = {};
      if (typeof body.env === "object" && body.env !== null) {
        for (const [k, v] of Object.entries(body.env)) if (typeof v === "string") env[k] = v;
      }
      this.#last.set(uuid, env);
      return env;
    } catch (err) {
      const last = this.#last.get(uuid);
      this.#logger.warn("could not get the app's env from the node", {
        uuid,
        error: (err as Error).message,
        using: last ? "the last values seen" : "none",
      });
      return last ?? {};
    }
  }
}
