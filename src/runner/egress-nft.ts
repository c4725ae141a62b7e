import { nftApply } from "./kernel-hop.js";

/**
 * The kernel half of a workload's egress rule (the proxy is the other half, see egress.ts): one
 * nftables `inet` table shared by every runner on the host, `tabbify_egress`, whose `output` hook
 * sends each confined app uid to its own chain. That chain lets the app's sockets answer
 * connections made to them, reach 127.0.0.1 on the ports in its set (its proxies and its own
 * listeners), and refuses everything else at once: TCP with a reset (ECONNREFUSED), the rest with
 * admin-prohibited (UDP sends fail with EPERM). So a native module, `net.connect` or a child
 * process cannot go around the proxy. It matches the socket's owner, so it needs workloads that
 * run as an app uid of their own (the supervisor as root) and `nft`.
 *
 * Every change is one `nft -f` transaction of idempotent statements, so runners need no order
 * between them. A chain stays (refusing everything) once its app has no workload: fail closed.
 */

export const EGRESS_TABLE = "tabbify_egress";

function uidOf(uid: number): number {
  if (!Number.isInteger(uid) || uid <= 0 || uid > 0xfffffffe) throw new Error(`bad app uid ${uid}`);
  return uid;
}

function portsOf(ports: readonly number[]): string {
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`bad port ${p}`);
  return ports.join(", ");
}

/** The table, the uid's chain and set, and `ports` added to the set. */
export function confineScript(uid: number, ports: readonly number[]): string {
  const t = `inet ${EGRESS_TABLE}`;
  const u = uidOf(uid);
  return [
    `add table ${t}`,
    `add map ${t} by_uid { type uid : verdict; }`,
    `add chain ${t} output { type filter hook output priority 0; policy accept; }`,
    `flush chain ${t} output`,
    `add rule ${t} output meta skuid vmap @by_uid`,
    `add set ${t} ports_${u} { type inet_service; }`,
    `add chain ${t} app_${u}`,
    `flush chain ${t} app_${u}`,
    `add rule ${t} app_${u} ct state established,related accept`,
    `add rule ${t} app_${u} ip daddr 127.0.0.1 tcp dport @ports_${u} accept`,
    `add rule ${t} app_${u} meta l4proto tcp counter reject with tcp reset`,
    `add rule ${t} app_${u} counter reject with icmpx admin-prohibited`,
    `add element ${t} by_uid { ${u} : jump app_${u} }`,
    ...(ports.length > 0 ? [`add element ${t} ports_${u} { ${portsOf(ports)} }`] : []),
    "",
  ].join("\n");
}

/** Confines `uid` (if not yet) and lets it reach 127.0.0.1 on `ports`. */
export function confineEgress(uid: number, ports: readonly number[], binary = "nft"): Promise<void> {
  return nftApply(confineScript(uid, ports), binary);
}

/** Takes `ports` out of the uid's set (a workload ended); the uid stays confined. */
export function releasePorts(uid: number, ports: readonly number[], binary = "nft"): Promise<void> {
  const t = `inet ${EGRESS_TABLE}`;
  const u = uidOf(uid);
  // `add` first, so a set already gone (a purge raced us) is no error.
  const script = `add table ${t}\nadd set ${t} ports_${u} { type inet_service; }\nadd element ${t} ports_${u} { ${portsOf(ports)} }\ndelete element ${t} ports_${u} { ${portsOf(ports)} }\n`;
  return nftApply(script, binary);
}

/** Removes the uid's chain and set (the app was purged); absent is fine. */
export function unconfine(uid: number, binary = "nft"): Promise<void> {
  const t = `inet ${EGRESS_TABLE}`;
  const u = uidOf(uid);
  const script = [
    `add table ${t}`,
    `add map ${t} by_uid { type uid : verdict; }`,
    `add chain ${t} app_${u}`,
    `add set ${t} ports_${u} { type inet_service; }`,
    `add element ${t} by_uid { ${u} : jump app_${u} }`,
    `delete element ${t} by_uid { ${u} }`,
    `delete chain ${t} app_${u}`,
    `delete set ${t} ports_${u}`,
    "",
  ].join("\n");
  return nftApply(script, binary);
}
