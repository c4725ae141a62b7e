import { blake3 } from "@noble/hashes/blake3.js";
import { parse as parseUuidBytes, v5 as uuidV5, validate as validateUuid } from "uuid";
import { TabbifyError } from "./errors.js";

/**
 * App addressing: the only place addresses are computed. An app's address is a pure function of
 * its UUID, so it survives restarts, pushes and moves between hosts.
 */

/** Every app serves on this port of its own address. */
export const APP_PORT = 8730;

/** `local` maps an app to a loopback twin (no privileges); `ula` binds the real IPv6 ULA. */
export type MeshMode = "local" | "ula";

/** RFC 4122 URL namespace, used for repository-derived app UUIDs. */
const NAMESPACE_URL = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

/** Validates an app UUID and returns it lowercased. Throws UUID_INVALID. */
export function parseAppUuid(value: string): string {
  if (typeof value !== "string" || !validateUuid(value)) {
    throw new TabbifyError("UUID_INVALID", `"${String(value).slice(0, 64)}" is not a UUID`);
  }
  return value.toLowerCase();
}

function appDigest(uuid: string): Uint8Array {
  // BLAKE3 over the 16 raw bytes in RFC 4122 (big-endian) order, default 32-byte output.
  return blake3(parseUuidBytes(parseAppUuid(uuid)));
}

/** `fd5a:1f02:h0:h1:h2::1`, h0..h2 the first three big-endian 16-bit words of BLAKE3(uuid bytes). */
export function deriveAppUla(uuid: string): string {
  const d = appDigest(uuid);
  const word = (i: number) => ((d[i]! << 8) | d[i + 1]!).toString(16);
  return `fd5a:1f02:${word(0)}:${word(2)}:${word(4)}::1`;
}

/**
 * The loopback twin used in `local` mesh mode: `127.b0.b1.b2'` from the same digest bytes, where
 * b0 = 0 is bumped to 1 (keeping clear of 127.0.0.0/16, where 127.0.0.1 lives) and the last octet
 * is folded into 1..254 (never a network or broadcast-looking .0/.255). Linux answers the whole
 * 127.0.0.0/8 on `lo`, so binding it needs no privileges.
 */
export function deriveAppLoopback(uuid: string): string {
  const d = appDigest(uuid);
  const b0 = d[0] === 0 ? 1 : d[0]!;
  return `127.${b0}.${d[1]!}.${(d[2]! % 254) + 1}`;
}

export function appAddress(uuid: string, mesh: MeshMode): string {
  return mesh === "ula" ? deriveAppUla(uuid) : deriveAppLoopback(uuid);
}

/** `host:port` with IPv6 brackets, for URLs and `--bind`. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The UUID a repository's app gets when nothing names one: UUID v5 in the URL namespace. */
export function appUuidFromRepo(repoUrl: string): string {
  if (typeof repoUrl !== "string" || repoUrl.trim() === "") {
    throw new TabbifyError("REPO_URL_INVALID", "repository URL is empty");
  }
  return uuidV5(repoUrl, NAMESPACE_URL);
}

/**
 * The UUID of one environment of an app: prod is the app's own UUID (its address never changes);
 * any other environment is UUID v5 with the app's UUID as namespace and the environment's name.
 */
export function environmentUuid(appUuid: string, environment: string): string {
  if (environment === "prod") return appUuid;
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(environment)) {
    throw new TabbifyError("BAD_REQUEST", "an environment name is lowercase letters, digits and dashes");
  }
  return uuidV5(environment, appUuid);
}
