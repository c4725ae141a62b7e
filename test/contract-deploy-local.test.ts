/**
 * `tcli deploy --local`: one self-contained executable (Node SEA) that serves the handler with
 * no node running and, inside a network namespace with only loopback, no way out. The `.env`
 * values it was built with are its defaults; the environment it runs in overrides them.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { cp, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { runTcli } from "./support/tcli-node.js";
import { freePort, repoRoot, requireCommand, tempDir } from "./support/tools.js";

const run = promisify(execFile);

/** Runs inside the namespace: starts the binary, asks it, and tries the network. */
const probe = `
import { spawn } from "node:child_process";
const [bin, port] = process.argv.slice(2);
const child = spawn(bin, [], { env: { PORT: port, HOST: "127.0.0.1", ...(process.env.OVERRIDE ? { GREETING: process.env.OVERRIDE } : {}) }, stdio: ["ignore", "inherit", "inherit"] });
const out = {};
try {
  for (let i = 0; i < 200; i++) {
    try { out.answer = await (await fetch("http://127.0.0.1:" + port + "/")).text(); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  try { await fetch("http://1.1.1.1/", { signal: AbortSignal.timeout(2000) }); out.network = "reachable"; } catch (e) { out.network = "off:" + (e.cause?.code ?? e.name); }
} finally { child.kill(); }
console.log(JSON.stringify(out));
`;

describe("tcli deploy --local", () => {
  let work: { path: string; remove(): Promise<void> };
  before(async () => {
    requireCommand("unshare", "util-linux");
    requireCommand("ip", "iproute2");
    work = await tempDir("contract-local");
  });
  after(async () => {
    await work?.remove();
  });

  test("builds .tabbify/deploy/<service> that answers with the node stopped and the network off", async () => {
    const app = join(work.path, "hello-handler");
    await cp(join(repoRoot, "examples", "hello-handler"), app, { recursive: true });
    await writeFile(join(app, ".env"), "GREETING=built-in-9c1\n");
    // No node anywhere: the URL points at a closed port.
    const r = await runTcli(["deploy", app, "--local"], {
      home: work.path,
      env: { TABBIFY_NODE_URL: "http://127.0.0.1:9" },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const binary = join(app, ".tabbify", "deploy", "hello-handler");
    assert.ok(r.stdout.includes(`built: ${binary}`), r.stdout);
    assert.ok(r.stdout.includes("Proof review · safe"), r.stdout);
    const info = await stat(binary);
    assert.equal(info.mode & 0o777, 0o700, "it carries .env values");
    const ledger = await readFile(join(app, ".tabbify", "proofs.jsonl"), "utf8");
    assert.equal(JSON.parse(ledger.trim()).kind, "deploy");
    assert.ok(!ledger.includes("built-in-9c1"));

    await writeFile(join(work.path, "probe.mjs"), probe);
    const inNetns = async (env: Record<string, string>) => {
      const { stdout } = await run(
        "unshare",
        [
          "-n",
          "--",
          "sh",
          "-c",
          `ip link set lo up && exec "${process.execPath}" "${join(work.path, "probe.mjs")}" "${binary}" 18080`,
        ],
        { env: { ...process.env, ...env }, timeout: 60_000 },
      );
      return JSON.parse(stdout.trim().split("\n").pop()!) as { answer?: string; network: string };
    };
    const built = await inNetns({});
    assert.equal(built.answer, "built-in-9c1 from hello-handler\n");
    assert.match(built.network, /^off:/);
    const overridden = await inNetns({ OVERRIDE: "from-env" });
    assert.equal(overridden.answer, "from-env from hello-handler\n");
  });

  test("the binary enforces the contract's egress: a host outside it is refused, and the refusal logged", async () => {
    const app = join(work.path, "egress-handler");
    await cp(join(repoRoot, "examples", "hello-handler"), app, { recursive: true });
    // fetch() to a literal URL is in the contract; node:http to another host is not.
    await writeFile(
      join(app, "handler.ts"),
      `import http from "node:http";
export default async function handler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/allowed") {
    try {
      await fetch("http://allowed.invalid/");
      return new Response("allowed-reached\\n");
    } catch (e) {
      return new Response("allowed-failed " + String((e as Error & { cause?: unknown }).cause ?? e) + "\\n");
    }
  }
  if (url.pathname === "/denied") {
    return await new Promise<Response>((resolve) => {
      const req = http.get("http://denied.invalid/", () => resolve(new Response("denied-reached\\n")));
      req.on("error", (e) => resolve(new Response("denied-refused " + e.message + "\\n")));
    });
  }
  return new Response("ok\\n");
}
`,
    );
    const r = await runTcli(["deploy", app, "--local"], {
      home: work.path,
      env: { TABBIFY_NODE_URL: "http://127.0.0.1:9" },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const binary = join(app, ".tabbify", "deploy", "hello-handler");
    const port = await freePort();
    const child = spawn(binary, [], {
      env: { PORT: String(port), HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    child.stdout.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr.on("data", (d: Buffer) => (log += d.toString()));
    try {
      const ask = async (path: string) => {
        for (let i = 0; ; i++) {
          try {
            return await (await fetch(`http://127.0.0.1:${port}${path}`)).text();
          } catch (err) {
            if (i > 300) throw err;
            await new Promise((res) => setTimeout(res, 100));
          }
        }
      };
      const denied = await ask("/denied");
      assert.match(denied, /^denied-refused /, denied);
      const allowed = await ask("/allowed");
      // Let through by the proxy; the name then fails to resolve, which is not a refusal.
      assert.match(allowed, /^allowed-failed /, allowed);
      assert.doesNotMatch(allowed, /not in this handler's contract/, allowed);
      for (let i = 0; i < 100 && !log.includes("denied.invalid"); i++)
        await new Promise((res) => setTimeout(res, 50));
      assert.match(log, /tabbify egress: refused denied\.invalid:80/, log);
      assert.doesNotMatch(log, /allowed\.invalid:80: not in this handler's contract/, log);
    } finally {
      child.kill();
    }
  });
});
