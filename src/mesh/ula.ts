import { isIPv6 } from "node:net";
import { TabbifyError } from "../core/errors.js";

/**
 * Peer (host) addresses in the mesh: `fd5a:1f00:<slot>:<idx>::1`. The slot is a function of the
 * network name, so one network's hosts share a /48; idx counts up from 1 inside it. App addresses
 * (`fd5a:1f02::/32`) are derived elsewhere (src/core/address.ts).
 */

/** The registry's fixed mesh address (seed 001): only a token granting it may claim it. */
export const REGISTRY_ULA = "fd5a:1f00:0:3::1";

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = 0xffffffffffffffffn;

/** FNV-1a, 64-bit, over the name's UTF-8 bytes. */
export function fnv1a64(text: string): bigint {
  let h = FNV_OFFSET;
  for (const byte of Buffer.from(text, "utf8")) {
    h ^= BigInt(byte);
    h = (h * FNV_PRIME) & MASK64;
  }
  return h;
}

/** A network's slot: 0 for the empty network, else FNV-1a-64 folded to 16 bits by XOR (0 → 1). */
export function networkSlot(network: string): number {
  if (network === "") return 0;
  const h = fnv1a64(network);
  let folded = 0n;
  for (let i = 0n; i < 4n; i++) folded ^= (h >> (16n * i)) & 0xffffn;
  return folded === 0n ? 1 : Number(folded);
}

export function peerUla(slot: number, idx: number): string {
  return normalizeUla(`fd5a:1f00:${slot.toString(16)}:${idx.toString(16)}::1`);
}

/** Canonical (RFC 5952) text of an IPv6 address; throws MESH_ULA_INVALID when it is not one. */
export function normalizeUla(text: string): string {
  if (typeof text !== "string" || !isIPv6(text) || text.includes("%")) {
    throw new TabbifyError("MESH_ULA_INVALID", `"${String(text).slice(0, 64)}" is not an IPv6 address`);
  }
  // The WHATWG URL parser prints IPv6 hosts in canonical form.
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

/** The eight 16-bit words of an IPv6 address. */
export function ulaWords(text: string): number[] {
  const canonical = normalizeUla(text);
  const [head = "", tail] = canonical.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((w) => Number.parseInt(w, 16));
}

/** fc00::/7. */
export function isUla(text: string): boolean {
  return ((ulaWords(text)[0] ?? 0) & 0xfe00) === 0xfc00;
}

/** `{slot, idx}` when the address is a peer address `fd5a:1f00:<slot>:<idx>::1`. */
export function peerSlot(text: string): { slot: number; idx: number } | undefined {
  const w = ulaWords(text);
  if (w[0] !== 0xfd5a || w[1] !== 0x1f00) return undefined;
  if (w[4] !== 0 || w[5] !== 0 || w[6] !== 0 || w[7] !== 1) return undefined;
  return { slot: w[2]!, idx: w[3]! };
}

/** Fixed infrastructure addresses: a slot's idx 0, and the registry's `fd5a:1f00:0:3::1`. */
export function isInfraUla(text: string): boolean {
  const canonical = normalizeUla(text);
  if (canonical === REGISTRY_ULA) return true;
  const p = peerSlot(canonical);
  return p !== undefined && p.idx === 0;
}
