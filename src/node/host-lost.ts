import type { Logger } from "../core/log.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { PeerInfo } from "../mesh/roster.js";
import type { HostLiveness } from "./host-probe.js";

/**
 * Finding a lost host before its heartbeat timeout (60 s), two ways: the proxy asks about the
 * host of an app that is slow to answer (`hostLost`), and a watch asks about every host whose
 * supervisor has missed a heartbeat (`watchLateHosts`), so a host nobody sends requests to is
 * listed down within seconds too. Either asks the supervisor's address for a handshake; a host
 * that gives none is marked lost on the roster (its supervisor and runners listed down, every
 * connection to its apps ended by the roster's lost-listener).
 */

/** Past one heartbeat interval, the slack a busy supervisor or network gets before it is asked. */
const LATE_SLACK_MS = 2_000;

/**
 * The proxy's question about a silent app: is the host running it lost? Undefined when no live
 * supervisor is known for the app.
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
  markHostLost(roster, supervisor, logger, "its supervisor gives no handshake");
  return true;
}

/**
 * One pass of the watch: asks the host of every supervisor that missed a heartbeat, and marks
 * lost those that give no handshake and are still late once asked (a heartbeat that lands
 * meanwhile wins). A supervisor killed with -9 on a live host refuses the handshake, so its
 * runners keep serving until the heartbeat timeout. Returns the supervisors marked lost.
 */
export async function probeLateHosts(
  roster: RosterCoordinator,
  probe: HostLiveness,
  logger: Logger,
): Promise<string[]> {
  const lateMs = roster.heartbeatIntervalSecs * 1000 + LATE_SLACK_MS;
  const silent = await Promise.all(
    roster.lateSupervisors(lateMs).map(async (s) => ((await probe.alive(s.address)) ? undefined : s)),
  );
  const stillLate = new Set(roster.lateSupervisors(lateMs).map((s) => s.name));
  const marked: string[] = [];
  for (const supervisor of silent) {
    if (!supervisor || !stillLate.has(supervisor.name)) continue;
    if (markHostLost(roster, supervisor, logger, "its heartbeats stopped and it gives no handshake"))
      marked.push(supervisor.name);
  }
  return marked;
}

/** Runs {@link probeLateHosts} every `everyMs` (one pass at a time) until the returned stop. */
export function watchLateHosts(
  roster: RosterCoordinator,
  probe: HostLiveness,
  logger: Logger,
  everyMs = 1_000,
): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void probeLateHosts(roster, probe, logger)
      .catch((err: unknown) => logger.warn("late host check failed", { error: (err as Error).message }))
      .finally(() => {
        running = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

function markHostLost(roster: RosterCoordinator, supervisor: PeerInfo, logger: Logger, why: string): boolean {
  if (!roster.markLost(supervisor.name)) return false;
  logger.warn(`host lost: ${why}; its apps are down until it is back`, {
    supervisor: supervisor.name,
    address: supervisor.address,
  });
  return true;
}
