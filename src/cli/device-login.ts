import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { NodeClient } from "../node/client.js";

/**
 * The client side of device login (RFC 8628): ask the node for a grant, show the user code, poll
 * the token endpoint at the interval the node gives (5 s more after each `slow_down`) until it
 * hands out a token, refuses, or the grant expires. Also the approver's side: approve or deny a
 * code from a terminal already logged in.
 */

export const DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code";

export interface DeviceGrant {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete?: string;
  expires_in: number;
  interval: number;
}

export async function startDeviceLogin(client: NodeClient): Promise<DeviceGrant> {
  const grant = await client.request<DeviceGrant>("POST", "/v1/auth/device", {});
  if (
    typeof grant.device_code !== "string" ||
    typeof grant.user_code !== "string" ||
    typeof grant.expires_in !== "number"
  ) {
    throw new TabbifyError("NODE_BAD_ANSWER", `${client.url} answered the device request without a grant`);
  }
  return grant;
}

export interface PollOptions {
  wait?: (ms: number) => Promise<unknown>;
  now?: () => number;
  /** Told each time the node asks to slow down, with the new interval in seconds. */
  onSlowDown?: (intervalSecs: number) => void;
}

/** Polls until the grant is approved (returns the token) or ends (throws, naming why). */
export async function awaitDeviceToken(
  client: NodeClient,
  grant: DeviceGrant,
  opts: PollOptions = {},
): Promise<string> {
  const wait = opts.wait ?? ((ms: number) => sleep(ms));
  const now = opts.now ?? Date.now;
  const deadline = now() + grant.expires_in * 1000;
  let interval = Number.isFinite(grant.interval) && grant.interval > 0 ? grant.interval : 5;
  while (now() < deadline) {
    await wait(interval * 1000);
    const { status, body } = await client.exchange("POST", "/v1/auth/device/token", {
      grant_type: DEVICE_GRANT_TYPE,
      device_code: grant.device_code,
    });
    if (status === 200 && typeof body.access_token === "string") return body.access_token;
    switch (body.error) {
      case "authorization_pending":
        continue;
      case "slow_down":
        interval = Math.max(interval + 5, typeof body.interval === "number" ? body.interval : 0);
        opts.onSlowDown?.(interval);
        continue;
      case "access_denied":
        throw new TabbifyError(
          "LOGIN_DENIED",
          `the login for code ${grant.user_code} was refused by an approver`,
        );
      case "expired_token":
        throw new TabbifyError(
          "LOGIN_EXPIRED",
          `code ${grant.user_code} expired before anyone approved it: run tcli login again`,
        );
      default:
        throw new TabbifyError(
          "LOGIN_FAILED",
          `the node ended the device login (${typeof body.error === "string" ? body.error : `HTTP ${status}`}): run tcli login again`,
        );
    }
  }
  throw new TabbifyError(
    "LOGIN_EXPIRED",
    `code ${grant.user_code} expired before anyone approved it: run tcli login again`,
  );
}

export interface ApproveResult {
  approved: boolean;
  tenant: string;
  subject: string;
  token_ttl_secs: number;
}

/** `tcli login approve <code>`: lets the waiting device in, for `tenant` (node key) or the caller's own. */
export function approveDevice(
  client: NodeClient,
  userCode: string,
  opts: { tenant?: string; subject?: string },
): Promise<ApproveResult> {
  return client.request("POST", "/v1/auth/device/approve", {
    user_code: userCode,
    ...(opts.tenant ? { tenant: opts.tenant } : {}),
    ...(opts.subject ? { subject: opts.subject } : {}),
  });
}

export function denyDevice(client: NodeClient, userCode: string): Promise<{ denied: boolean }> {
  return client.request("POST", "/v1/auth/device/deny", { user_code: userCode });
}

/** What the waiting terminal shows (stderr), so the user knows what to do next. */
export function deviceInstructions(grant: DeviceGrant, nodeUrl: string): string {
  return [
    `To log in to ${nodeUrl}, approve this code: ${grant.user_code}`,
    `  from a terminal already logged in:  tcli login approve ${grant.user_code} --node ${nodeUrl} [--tenant NAME]`,
    `  or see ${grant.verification_uri_complete ?? grant.verification_uri}`,
    `Waiting (the code expires in ${Math.round(grant.expires_in / 60)} min; Ctrl-C gives up)…`,
    "",
  ].join("\n");
}
