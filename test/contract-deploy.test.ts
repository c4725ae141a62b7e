/**
 * `tcli deploy` end to end: the compiled tcli against a real node and a real supervisor. Review
 * then deploy, the card and the ledger (no env values in it), env and egress enforcement with an
 * app that reaches past its contract, drift with and without --confirm, exit codes 1–4, and the
 * start-to-answering time.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fastSupervisorArgs, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { CONTRACT_NODE_KEY, type ContractStack, call, startContractStack } from "./support/contract-stack.js";
import { runTcli } from "./support/tcli-node.js";
import { repoRoot, tempDir } from "./support/tools.js";

/** The shared egress table as nft lists it, for a failure's message. */
async function nftEgressTable(): Promise<string> {
  return new Promise((resolve) =>
    execFile("nft", ["list", "table", "inet", "tabbify_egress"], (err, out, errOut) =>
      resolve(err ? `nft failed: ${errOut || err.message}` : out),
    ),
  );
}

/** Which uids the processes whose command line names the app run as, for a failure's message. */
async function workloadUids(uuid: string): Promise<string> {
  return new Promise((resolve) =>
    execFile("ps", ["-eo", "uid,pid,args"], (err, out) =>
      resolve(
        err
          ? err.message
          : out
              .split("\n")
              .filter((l) => l.includes(uuid) || l.includes("reacher"))
              .join("\n"),
      ),
    ),
  );
}

describe("tcli deploy against a node and a supervisor", () => {
  let stack: ContractStack;
  let sup: SupervisorUnderTest;
  let work: { path: string; remove(): Promise<void> };
  const tcli = (args: string[]) =>
    runTcli(args, {
      home: work.path,
      env: { TABBIFY_TOKEN: CONTRACT_NODE_KEY, TABBIFY_NODE_URL: stack.url },
    });
  const hello = () => join(work.path, "hello-handler");

  before(async () => {
    work = await tempDir("contract-deploy");
    sup = new SupervisorUnderTest([...fastSupervisorArgs(20_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: CONTRACT_NODE_KEY,
    });
    stack = await startContractStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.url);
    await sup.start();
    await until("the supervisor on the node's roster", async () =>
      stack.node.coordinator.supervisors().length > 0 ? true : undefined,
    );
    await cp(join(repoRoot, "examples", "hello-handler"), hello(), { recursive: true });
    await writeFile(
      join(hello(), ".env"),
      "GREETING=bonjour-7f3a\n# a comment\nUNUSED_SECRET=zz-unused-41\n",
    );
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await work?.remove();
  });

  test("review required (exit 1), approve with a grant, deploy again: the card, the URL, the ledger", async () => {
    const first = await tcli(["deploy", hello()]);
    assert.equal(first.code, 1, first.stdout + first.stderr);
    assert.match(first.stdout, /needs review: +new env read: GREETING/);
    const planId = /plan +([0-9a-f-]{36})/.exec(first.stdout)?.[1];
    assert.ok(planId, first.stdout);
    const review = await tcli(["review", planId, "--approve", "--grant"]);
    assert.equal(review.code, 0, review.stderr);
    assert.match(review.stdout, /approved \(grant\)/);

    const deployed = await tcli(["deploy", hello()]);
    assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
    for (const want of [
      "Proof review · safe",
      "proof level  complete",
      "routes       /, /health",
      "env          GREETING",
    ])
      assert.ok(deployed.stdout.includes(want), deployed.stdout);
    const url = /ready: (http\S+)/.exec(deployed.stdout)?.[1];
    assert.ok(url, deployed.stdout);
    assert.match(deployed.stdout, /digest: sha256:[0-9a-f]{64}/);
    const res = await fetch(url);
    assert.equal(await res.text(), "bonjour-7f3a from hello-handler\n");

    // Only contract-derived identifiers reach the ledger and the state: no env values.
    const ledger = await readFile(join(hello(), ".tabbify", "proofs.jsonl"), "utf8");
    const state = await readFile(join(hello(), ".tabbify", "deploy-state.json"), "utf8");
    for (const text of [ledger, state]) {
      assert.ok(!text.includes("bonjour-7f3a") && !text.includes("zz-unused-41"), text);
      assert.ok(!text.includes(CONTRACT_NODE_KEY), "no token");
    }
    const row = JSON.parse(ledger.trim().split("\n").pop()!) as {
      kind: string;
      facts: { envKeys: string[]; contractSha: string };
    };
    assert.equal(row.kind, "deploy");
    assert.deepEqual(row.facts.envKeys, ["GREETING"]);
    // The node keeps the same rows per project.
    const kept = await call(stack, "GET", "/v1/projects/hello-handler/proofs", CONTRACT_NODE_KEY);
    assert.equal((kept.json.rows as unknown[]).length, 1);

    // The bundle is an OCI artifact in the tenant's repository, the contract its annotations; the
    // referrers API lists its signature, its release manifest and its proof.
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(deployed.stdout)![1]!;
    const uuid = /\/app\/([0-9a-f-]{36})\//.exec(url)![1]!;
    const repository = `admin/${uuid}`;
    const auth = { authorization: `Bearer ${await stack.pullToken("admin", repository)}` };
    const manifest = (await (
      await fetch(`${stack.registry.url}/v2/${repository}/manifests/${digest}`, {
        headers: { ...auth, accept: "application/vnd.oci.image.manifest.v1+json" },
      })
    ).json()) as { artifactType: string; annotations: Record<string, string> };
    assert.equal(manifest.artifactType, "application/vnd.tabbify.handler.v1");
    assert.equal(manifest.annotations["dev.tabbify.contract.env"], "GREETING");
    assert.match(manifest.annotations["dev.tabbify.contract.routes"] ?? "", /\/health/);
    const referrers = (await (
      await fetch(`${stack.registry.url}/v2/${repository}/referrers/${digest}`, { headers: auth })
    ).json()) as {
      manifests: { artifactType: string; digest: string; annotations?: Record<string, string> }[];
    };
    const types = referrers.manifests.map((m) => m.artifactType).sort();
    for (const want of [
      "application/vnd.tabbify.proof.v1+json",
      "application/vnd.tabbify.release.manifest.v1+json",
    ])
      assert.ok(types.includes(want), types.join());
    assert.equal(referrers.manifests.length, 3, `signature, release manifest, proof: ${types.join()}`);
    const proof = referrers.manifests.find(
      (m) => m.artifactType === "application/vnd.tabbify.proof.v1+json",
    )!;
    assert.equal(proof.annotations?.["dev.tabbify.contract.sha"], row.facts.contractSha);
    // The supervisor pulled it by digest into its own data dir; the node keeps no copy.
    const hex = digest.slice("sha256:".length);
    assert.ok(
      (await readFile(join(sup.dataDir, "handler-artifacts", hex, "handler.mjs"), "utf8")).length > 0,
    );
    assert.equal(await readdir(join(stack.dataDir, "handler-uploads")).then((x) => x.length), 0);
    // The release of that digest is recorded.
    const releases = await stack.node
      .store!.db.selectFrom("releases")
      .selectAll()
      .where("app_uuid", "=", uuid)
      .execute();
    assert.deepEqual(
      releases.map((r) => r.digest),
      [digest],
    );

    const list = await tcli(["proofs", "--dir", hello(), "list"]);
    assert.match(list.stdout, /deploy +[0-9a-f]{8} +safe +2r\/1e\/0h\/0c\/1cap/);
    const md = await tcli(["proofs", "--dir", hello(), "export", "--format", "md"]);
    assert.ok(md.stdout.startsWith("## Proof review\n\n- Verdict: safe\n"), md.stdout);
  });

  test("drift: a new region or a managed env name gone exits 2 untouched; --confirm proceeds", async () => {
    const statePath = join(hello(), ".tabbify", "deploy-state.json");
    const before = await readFile(statePath, "utf8");
    const moved = await tcli(["deploy", hello(), "--region", "process"]);
    assert.equal(moved.code, 2, moved.stdout + moved.stderr);
    assert.match(moved.stdout, /region changed: default -> process/);
    assert.equal(await readFile(statePath, "utf8"), before, "nothing touched");
    const confirmed = await tcli(["deploy", hello(), "--region", "process", "--confirm"]);
    assert.equal(confirmed.code, 0, confirmed.stdout + confirmed.stderr);
    assert.match(await readFile(statePath, "utf8"), /"region": "process"/);

    await writeFile(join(hello(), ".env"), "UNUSED_SECRET=zz-unused-41\n");
    const gone = await tcli(["deploy", hello()]);
    assert.equal(gone.code, 2);
    assert.match(gone.stdout, /managed env GREETING is gone/);
    await writeFile(join(hello(), ".env"), "GREETING=bonjour-7f3a\n");
    const malformed = join(work.path, "malformed");
    await cp(hello(), malformed, { recursive: true });
    await writeFile(join(malformed, ".env"), "GREETING=x\nthis line is wrong\n");
    const bad = await tcli(["deploy", malformed]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\.env:2: expected KEY=value/);
  });

  test("enforcement: only the contract's env names, and egress only to the contract's hosts", async () => {
    assert.equal(
      (await call(stack, "PUT", "/v1/deploy/review-policy", CONTRACT_NODE_KEY, { risky: [] })).status,
      200,
    );
    let deniedHits = 0;
    const allowed: Server = createServer((_q, s) => s.end("allowed-ok"));
    const denied: Server = createServer((_q, s) => {
      deniedHits++;
      s.end("should-not-see");
    });
    await new Promise<void>((r) => allowed.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => denied.listen(0, "127.0.0.1", r));
    const allowedPort = (allowed.address() as AddressInfo).port;
    const deniedPort = (denied.address() as AddressInfo).port;
    try {
      const dir = join(work.path, "reacher");
      await mkdir(join(dir, "node_modules", "probe"), { recursive: true });
      await writeFile(join(dir, "package.json"), '{"name": "reacher", "type": "module"}\n');
      await writeFile(join(dir, ".env"), "GREETING=hi\nOTHER_SECRET=not-for-the-app\n");
      // A package the analyser does not follow reads all env names and dials a host off-contract.
      await writeFile(
        join(dir, "node_modules", "probe", "package.json"),
        '{"name":"probe","type":"module","main":"index.js"}\n',
      );
      await writeFile(
        join(dir, "node_modules", "probe", "index.js"),
        `import net from "node:net";
export const envNames = () => Object.keys(process.env).sort();
export async function reach() {
  try { const r = await fetch("http://127.0.0.1:${deniedPort}/"); return "reached:" + r.status; }
  catch (e) { return "refused:" + (e.cause?.code ?? e.message); }
}
// Around the proxy, as native code would: a raw socket straight to a host, even an allowed one.
export const direct = (port) => new Promise((resolve) => {
  const s = net.connect(port, "127.0.0.1");
  s.once("connect", () => { s.destroy(); resolve("connected"); });
  s.once("error", (e) => resolve("failed:" + e.code));
});\n`,
      );
      await writeFile(
        join(dir, "handler.ts"),
        `import { direct, envNames, reach } from "probe";
export default async (req: Request) => {
  const { pathname } = new URL(req.url);
  if (pathname === "/env") return new Response(JSON.stringify(envNames()));
  if (pathname === "/allowed") { const r = await fetch("http://127.0.0.1:${allowedPort}/"); return new Response(await r.text()); }
  if (pathname === "/denied") return new Response(await reach());
  if (pathname === "/direct-denied") return new Response(await direct(${deniedPort}));
  if (pathname === "/direct-allowed") return new Response(await direct(${allowedPort}));
  return new Response(process.env.GREETING);
};\n`,
      );
      const r = await tcli(["deploy", dir]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /proof level {2}partial/);
      const url = /ready: (http\S+)/.exec(r.stdout)![1]!;
      const names = JSON.parse(await (await fetch(`${url}env`)).text()) as string[];
      assert.ok(names.includes("GREETING"), names.join());
      assert.ok(!names.includes("OTHER_SECRET"), names.join());
      assert.equal(await (await fetch(`${url}allowed`)).text(), "allowed-ok");
      assert.equal(await (await fetch(`${url}denied`)).text(), "refused:EGRESS_REFUSED");
      // The kernel refuses the workload's own connections anywhere but its proxy (root + nft here).
      const uuid = /\/app\/([0-9a-f-]{36})\//.exec(url)![1]!;
      const why = async () =>
        `\n--- app log ---\n${(await readFile(join(sup.dataDir, "runners", `${uuid}.log`), "utf8")).slice(-3000)}` +
        `\n--- nft ---\n${await nftEgressTable()}\nworkload uids: ${await workloadUids(uuid)}`;
      const directDenied = await (await fetch(`${url}direct-denied`)).text();
      assert.equal(directDenied, "failed:ECONNREFUSED", await why());
      const directAllowed = await (await fetch(`${url}direct-allowed`)).text();
      assert.equal(directAllowed, "failed:ECONNREFUSED", await why());
      assert.equal(deniedHits, 0);
      const log = await readFile(join(sup.dataDir, "runners", `${uuid}.log`), "utf8");
      assert.match(
        log,
        new RegExp(`tabbify egress: refused 127\\.0\\.0\\.1:${deniedPort}: not in this handler's contract`),
      );
    } finally {
      allowed.close();
      denied.close();
    }
  });

  test("exit 4 when the service fails to start, exit 3 when it is not ready in time", async () => {
    const broken = join(work.path, "broken");
    await mkdir(broken, { recursive: true });
    await writeFile(join(broken, "package.json"), '{"name": "broken-handler"}\n');
    await writeFile(
      join(broken, "handler.js"),
      `throw new Error("boom at load");\nexport default () => new Response("x");\n`,
    );
    const failed = await tcli(["deploy", broken]);
    assert.equal(failed.code, 4, failed.stdout + failed.stderr);
    assert.match(failed.stdout, /failed: broken-handler did not start/);

    const slow = join(work.path, "slow");
    await mkdir(slow, { recursive: true });
    await writeFile(join(slow, "package.json"), '{"name": "slow-handler"}\n');
    await writeFile(join(slow, "handler.js"), `export default () => new Response("slow");\n`);
    const timedOut = await tcli(["deploy", slow, "--wait-timeout", "0.05"]);
    assert.equal(timedOut.code, 3, timedOut.stdout + timedOut.stderr);
    assert.match(timedOut.stdout, /timed out: slow-handler was not ready/);
  });

  test("start to answering, warm (median of 5)", async (t) => {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const r = await tcli(["deploy", hello()]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const url = /ready: (http\S+)/.exec(r.stdout)![1]!;
      assert.equal((await fetch(url)).status, 200);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    // The supervisor's pull of each artifact by digest (a re-deploy of the same bytes reuses it).
    const pulls = [...sup.log.matchAll(/pulled a handler artifact[^\n]*?\bms\W{1,3}(\d+)/g)].map((m) =>
      Number(m[1]),
    );
    t.diagnostic(`artifact pulls (ms): ${pulls.join(", ")}`);
    t.diagnostic(
      `tcli deploy start to answering: median ${(times[2]! / 1000).toFixed(2)} s (${times.map((x) => (x / 1000).toFixed(2)).join(", ")})`,
    );
  });
});
