/**
 * `tcli deploy --local`: one self-contained executable (Node SEA) that serves the handler with
 * no node running and, inside a network namespace with only loopback, no way out. The `.env`
 * values it was built with are its defaults; the environment it runs in overrides them.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { runTcli } from "./support/tcli-node.js";
import { repoRoot, requireCommand, tempDir } from "./support/tools.js";

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
});
