import { isIP } from "node:net";
import { createLogger } from "../core/log.js";

/**
 * Every role binds loopback by default. On any other address but the mesh's (a ULA, fc00::/7),
 * what may reach it is no longer the host's to say, so the role says so once at start: access
 * control then belongs to a proxy or firewall in front (seed 004).
 */
export function publicBindWarning(role: string, host: string): string | undefined {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1" || /^127\./.test(h)) return undefined;
  if (isIP(h) === 6 && /^f[cd][0-9a-f]{0,2}:/.test(h)) return undefined;
  return (
    `tabbify ${role}: warning: listening on ${host}, not loopback: anyone who can reach this ` +
    "address reaches the API. Own access control with a proxy or firewall in front of it.\n"
  );
}

/** Prints the warning to stderr when `host` is not loopback or the mesh. */
export function warnIfPublic(role: string, host: string): void {
  const warning = publicBindWarning(role, host);
  if (warning) createLogger(role).warn(warning.replace(`tabbify ${role}: warning: `, "").trim());
}
