import type { Logger } from "../core/log.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { HostLiveness } from "./host-probe.js";

/**
 * The proxy's question about a silent app: is the host running it lost? Asks the app's
 * supervisor for a handshake; a host that gives none is marked lost on the roster at once (its
 * supervisor and runners listed down, every connection to its apps ended by the roster's
 * lost-listener), rather than at the heartbeat timeout. Undefined when no live supervisor is
 * known for the app.
 */
export async function hostLost(
  roster: RosterCoordinator,
  probe: HostLiveness,
  uuid: string,
  logger: Logger,
): Promise<boolean | undefined> {
  const supervisor = roster.supervisorOf(uuid);
  if (!supervisor) return undefined;
  if (await probe.alive(supervisor.address)) return false;
  if (roster.markLost(supervisor.name)) {
    logger.warn("host lost: its supervisor gives no handshake; its apps are down until it is back", {
      supervisor: supervisor.name,
      address: supervisor.address,
    });
  }
  return true;
}
