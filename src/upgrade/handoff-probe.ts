/**
 * Whether the process that answers a role's port runs `version` and is ready. While old and new
 * processes share the listening socket either may accept a connection, so both questions go over
 * ONE connection (a keep-alive agent with a single socket): the `/api/ready` answer then comes
 * from the same process that reported the version.
 */
import http from "node:http";
import { sleep } from "../core/sleep.js";

interface Answer {
  status: number;
  body: string;
}

function get(agent: http.Agent, host: string, port: number, path: string): Promise<Answer> {
  return new Promise((done, fail) => {
    const req = http.get({ host, port, path, agent, timeout: 2_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (body.length < 64 * 1024) body += chunk;
      });
      res.on("end", () => done({ status: res.statusCode ?? 0, body }));
      res.on("error", fail);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer on ${path} within 2 s`)));
    req.on("error", fail);
  });
}

export type ProbeResult = { ready: true } | { ready: false; reason: string };

/** One attempt over one fresh connection. */
export async function probeVersionReady(host: string, port: number, version: string): Promise<ProbeResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const answered = await get(agent, host, port, "/api/version");
    let running: unknown;
    try {
      running = (JSON.parse(answered.body) as { version?: unknown }).version;
    } catch {
      running = undefined;
    }
    if (answered.status !== 200 || running !== version) {
      return { ready: false, reason: `/api/version answered ${answered.status} ${JSON.stringify(running)}` };
    }
    const ready = await get(agent, host, port, "/api/ready");
    if (ready.status !== 200)
      return { ready: false, reason: `/api/ready answered ${ready.status}: ${ready.body.slice(0, 200)}` };
    return { ready: true };
  } catch (err) {
    return { ready: false, reason: (err as Error).message };
  } finally {
    agent.destroy();
  }
}

/**
 * Probes until `host:port` answers as `version` and ready (resolves with the ms it took), the
 * candidate process exits, or `timeoutMs` passes (both reject with the reason).
 */
export async function waitVersionReady(
  host: string,
  port: number,
  version: string,
  timeoutMs: number,
  exited: () => string | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    const gone = exited();
    if (gone) throw new Error(`exited with ${gone} while starting`);
    const probe = await probeVersionReady(host, port, version);
    if (probe.ready) return;
    last = probe.reason;
    if (Date.now() >= deadline) throw new Error(`not ready within ${timeoutMs / 1000} s (${last})`);
    await sleep(100);
  }
}

/** `exited` for waitVersionReady: how a child process ended, or undefined while it runs. */
export function childExit(child: {
  exitCode: number | null;
  signalCode: NodeJS.Signals | null;
}): () => string | undefined {
  return () =>
    child.exitCode !== null || child.signalCode !== null
      ? (child.signalCode ?? `code ${child.exitCode}`)
      : undefined;
}
