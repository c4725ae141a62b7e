import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";
import type { RuntimeKind } from "../runtimes/runtime.js";

/** What this host can do, and the one privileged operation `ula` mode needs: /128s on `lo`. */

const run = promisify(execFile);
const CAP_NET_ADMIN = 12n;

/** Whether this process holds CAP_NET_ADMIN in its effective set (/proc/self/status CapEff). */
export async function hasNetAdmin(): Promise<boolean> {
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  if (!hex) return false;
  return ((BigInt(`0x${hex}`) >> CAP_NET_ADMIN) & 1n) === 1n;
}

/**
 * Capability tags in the frozen order: supervisor, process, wasm, docker, builder, firecracker.
 * `builder` (started with --builder) is advertised only while the docker daemon answers, so a
 * daemon that starts later turns it on without a restart, and one that stops turns it off.
 */
export function capabilityTags(available: readonly RuntimeKind[], builder: boolean): string[] {
  const tags = ["supervisor"];
  for (const kind of ["process", "wasm", "docker"] as const) if (available.includes(kind)) tags.push(kind);
  if (builder && available.includes("docker")) tags.push("builder");
  // firecracker needs /dev/kvm and a firecracker binary; no runtime here drives it, so never.
  return tags;
}

export interface AddressManager {
  add(ula: string): Promise<void>;
  remove(ula: string): Promise<void>;
}

/** Adds and removes app ULAs as /128s on an interface (`lo` on a single host). */
export class InterfaceAddresses implements AddressManager {
  constructor(private readonly device = "lo") {}

  async add(ula: string): Promise<void> {
    try {
      await run("ip", ["-6", "addr", "add", `${ula}/128`, "dev", this.device, "nodad"]);
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? "");
      if (/File exists/i.test(stderr)) return;
      throw new TabbifyError(
        "ADDRESS_ADD_FAILED",
        `cannot add ${ula}/128 to ${this.device}: ${stderr.trim()}`,
      );
    }
  }

  async remove(ula: string): Promise<void> {
    try {
      await run("ip", ["-6", "addr", "del", `${ula}/128`, "dev", this.device]);
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? "");
      if (/Cannot assign requested address|not found/i.test(stderr)) return;
      throw new TabbifyError(
        "ADDRESS_DEL_FAILED",
        `cannot remove ${ula}/128 from ${this.device}: ${stderr.trim()}`,
      );
    }
  }
}

/** `local` mode binds loopback twins, which need nothing added. */
export const noAddresses: AddressManager = { add: async () => {}, remove: async () => {} };
