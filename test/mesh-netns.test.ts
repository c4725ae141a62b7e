import assert from "node:assert/strict";
import crypto from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { deriveAppUla } from "../src/core/address.js";
import { type RunningProcess, repoRoot, run, spawnProcess, tempDir } from "./support/tools.js";

/**
 * Two "hosts" as network namespaces joined by a veth pair with ULA underlay addresses. Host A runs
 * the node (coordinator and `/app/<uuid>` proxy, joined to its own mesh); host B runs a
 * supervisor joined over wireguard-go and an app on its app ULA. The node on A reaches the app
 * through `/app/<uuid>` over the tunnel.
 */
const tag = crypto.randomBytes(3).toString("hex");
const nsA = `tmA${tag}`;
const nsB = `tmB${tag}`;
const underlay = `fd7e:${tag.slice(0, 4)}:${tag.slice(4)}::`;
const procs: RunningProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];

function requireMeshHost(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (network namespaces and WireGuard need CAP_NET_ADMIN)");
  if (!existsSync("/dev/net/tun")) missing.push("/dev/net/tun");
  for (const [bin, pkg] of [
    ["/usr/bin/wireguard-go", "wireguard-go"],
    ["/usr/bin/wg", "wireguard-tools"],
  ] as const) {
    if (!existsSync(bin)) missing.push(`${bin} (apt-get install -y ${pkg})`);
  }
  if (missing.length > 0) throw new Error(`the mesh test needs: ${missing.join("; ")}`);
}

async function ns(name: string, ...args: string[]): Promise<string> {
  return (await run("ip", ["netns", "exec", name, ...args])).stdout;
}

function inNs(name: string, args: string[], env: NodeJS.ProcessEnv): RunningProcess {
  const entry = join(repoRoot, "dist", "src", "main", "tabbify.js");
  const p = spawnProcess("ip", ["netns", "exec", name, process.execPath, entry, ...args], {
    env: { ...process.env, ...env },
  });
  procs.push(p);
  return p;
}

after(async () => {
  for (const p of procs.reverse()) await p.stop(3000).catch(() => {});
  for (const name of [nsA, nsB]) {
    const pids = await run("ip", ["netns", "pids", name]).then(
      (r) => r.stdout.split(/\s+/).filter(Boolean),
      () => [],
    );
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await run("ip", ["netns", "del", name]).catch(() => {});
  }
  for (const c of cleanups) await c();
});

test("an app on host B answers through the node on host A over wireguard-go", {
  timeout: 180_000,
}, async () => {
  requireMeshHost();
  await run("ip", ["netns", "add", nsA]);
  await run("ip", ["netns", "add", nsB]);
  await run("ip", [
    "link",
    "add",
    `va${tag}`,
    "netns",
    nsA,
    "type",
    "veth",
    "peer",
    "name",
    `vb${tag}`,
    "netns",
    nsB,
  ]);
  for (const [name, dev, addr] of [
    [nsA, `va${tag}`, `${underlay}1`],
    [nsB, `vb${tag}`, `${underlay}2`],
  ] as const) {
    await ns(name, "ip", "link", "set", "lo", "up");
    await ns(name, "ip", "-6", "addr", "add", `${addr}/64`, "dev", dev, "nodad");
    await ns(name, "ip", "link", "set", dev, "up");
  }

  const dataA = await tempDir("mesh-ns-a");
  const dataB = await tempDir("mesh-ns-b");
  cleanups.push(dataA.remove, dataB.remove);
  const mint = spawnProcess(process.execPath, [
    join(repoRoot, "dist", "src", "main", "tabbify.js"),
    "mesh",
    "token",
    "--data",
    dataA.path,
    "--network",
    "acme",
    "--tags",
    "supervisor",
  ]);
  assert.equal(await mint.exited, 0, mint.output());
  const token = mint.output().trim().split("\n").at(-1) as string;

  const nodeUrl = `http://[${underlay}1]:8090`;
  const node = inNs(
    nsA,
    [
      "node",
      "--listen",
      `[${underlay}1]:8090`,
      "--data",
      dataA.path,
      "--mesh",
      "wireguard",
      "--mesh-interface",
      `wa${tag}`,
    ],
    {
      TABBIFY_NODE_KEY: "netns-node-key",
    },
  );
  await node.waitForLine(/wireguard interface up/, 60_000);

  // The app on host B: a plain HTTP server on its app ULA, which B's supervisor advertises.
  const uuid = "0191e7c2-1111-7222-8333-444455556666";
  const appUla = deriveAppUla(uuid);
  await ns(nsB, "ip", "-6", "addr", "add", `${appUla}/128`, "dev", "lo", "nodad");
  const app = spawnProcess("ip", [
    "netns",
    "exec",
    nsB,
    process.execPath,
    "-e",
    `require("node:http").createServer((q, s) => s.end("hello from B " + q.url)).listen(8730, "${appUla}", () => console.log("app up"))`,
  ]);
  procs.push(app);
  await app.waitForLine(/app up/);

  const joinEnv = { TABBIFY_MESH_JOIN_TOKEN: token, TABBIFY_MESH_COORDINATOR: nodeUrl };
  const joinSupervisor = async (name: string, hostName: string, data: string, ifname: string) => {
    const p = inNs(
      name,
      [
        "supervisor",
        "--data",
        data,
        "--name",
        hostName,
        "--mesh",
        "wireguard",
        "--mesh-interface",
        ifname,
        "--warm-spares",
        "0",
      ],
      joinEnv,
    );
    await p.waitForLine(/listening/, 60_000);
    return p;
  };
  const supB = await joinSupervisor(nsB, "host-b", dataB.path, `wb${tag}`);

  // The node on A dials the app's ULA; the route goes through A's WireGuard interface to B.
  const deadline = Date.now() + 60_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      last = await ns(nsA, "curl", "-sS", "--max-time", "3", `${nodeUrl}/app/${uuid}/ping`);
      if (last.includes("hello from B")) break;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.match(
    last,
    /hello from B \/ping/,
    `${last}\n--- A wg:\n${await ns(nsA, "wg", "show").catch(String)}\n--- supB:\n${supB.output()}\n--- node:\n${node.output()}`,
  );
  const wgA = await ns(nsA, "wg", "show", `wa${tag}`);
  assert.match(wgA, /latest handshake/);
  assert.match(wgA, new RegExp(`${appUla}/128`));

  // The coordinator's view: both hosts in network acme, B hosting the app.
  const topo = JSON.parse(
    await ns(nsA, "curl", "-sS", "-H", "authorization: Bearer netns-node-key", `${nodeUrl}/v1/mesh/topology`),
  ) as { machines: { display_name: string; network: string; ula: string; hosted_app_ulas: string[] }[] };
  const byName = new Map(topo.machines.map((m) => [m.display_name, m]));
  assert.deepEqual([...byName.keys()].sort(), ["host-b", "node"]);
  assert.deepEqual(byName.get("host-b")?.hosted_app_ulas, [appUla]);
  assert.match(byName.get("host-b")?.ula ?? "", /^fd5a:1f00:fe5e:[12]::1$/);

  // B's supervisor API answers on its peer ULA, across the tunnel.
  const health = await ns(
    nsA,
    "curl",
    "-sS",
    "--max-time",
    "5",
    `http://[${byName.get("host-b")?.ula}]:8730/health`,
  );
  assert.match(health, /ok/);
});
