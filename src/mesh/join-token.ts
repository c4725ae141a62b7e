import crypto from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { TabbifyError } from "../core/errors.js";
import { isInfraUla, normalizeUla } from "./ula.js";

/**
 * Join tokens: HS256 JWTs signed with the coordinator's key (kept in the node's store, so every
 * node sharing the store accepts the others' tokens). The claims decide what a joiner is: its
 * network, its tags and the fixed infrastructure addresses it may claim.
 */
export interface JoinClaims {
  network: string;
  tags: string[];
  /** Fixed infra ULAs (canonical) this token may request, e.g. the registry's. */
  requested_ulas: string[];
}

const ISSUER = "tabbify-mesh";
const AUDIENCE = "tabbify-mesh-join";
const NETWORK_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TAG_RE = /^[a-z0-9][a-z0-9._-]{0,31}$/;

/** Tags any joiner may advertise about itself on top of its token's (what the host can run). */
export const SELF_ADVERTISED_TAGS: readonly string[] = ["supervisor", "firecracker", "docker", "builder"];

export function validateNetwork(network: string): string {
  if (network !== "" && !NETWORK_RE.test(network)) {
    throw new TabbifyError(
      "USAGE",
      `network "${network.slice(0, 64)}" must match ${NETWORK_RE.source} (or be empty)`,
    );
  }
  return network;
}

export function validateTags(tags: readonly string[]): string[] {
  for (const t of tags) {
    if (!TAG_RE.test(t))
      throw new TabbifyError("USAGE", `tag "${String(t).slice(0, 40)}" must match ${TAG_RE.source}`);
  }
  return [...new Set(tags)];
}

export interface MintOptions extends Partial<JoinClaims> {
  network: string;
  /** Lifetime; default 24 h. */
  ttlSecs?: number;
}

export async function mintJoinToken(key: Buffer, opts: MintOptions): Promise<string> {
  const network = validateNetwork(opts.network);
  const tags = validateTags(opts.tags ?? []);
  const granted = (opts.requested_ulas ?? []).map((u) => {
    const ula = normalizeUla(u);
    if (!isInfraUla(ula)) throw new TabbifyError("USAGE", `${ula} is not a fixed infrastructure address`);
    return ula;
  });
  const ttl = opts.ttlSecs ?? 86_400;
  if (!Number.isInteger(ttl) || ttl <= 0)
    throw new TabbifyError("USAGE", "the token lifetime must be a positive integer of seconds");
  return new SignJWT({ network, tags, requested_ulas: granted })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .setExpirationTime(`${ttl}s`)
    .sign(key);
}

/** Throws MESH_TOKEN_INVALID (401) for any token this coordinator did not sign or that expired. */
export async function verifyJoinToken(key: Buffer, token: string): Promise<JoinClaims> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key, {
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ["HS256"],
    }));
  } catch (err) {
    const why =
      err instanceof joseErrors.JWTExpired
        ? "the join token has expired"
        : "the join token is not valid here";
    throw new TabbifyError("MESH_TOKEN_INVALID", why);
  }
  const { network, tags, requested_ulas: granted } = payload;
  if (
    typeof network !== "string" ||
    !Array.isArray(tags) ||
    tags.some((t) => typeof t !== "string") ||
    !Array.isArray(granted) ||
    granted.some((u) => typeof u !== "string")
  ) {
    throw new TabbifyError("MESH_TOKEN_INVALID", "the join token's claims are malformed");
  }
  return { network, tags: tags as string[], requested_ulas: (granted as string[]).map(normalizeUla) };
}
