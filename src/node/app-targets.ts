import type { RosterCoordinator } from "../mesh/coordinator.js";

/**
 * Which supervisors an operation on an app must reach: its `servers`, the supervisor whose runner
 * has it on the roster, and those the node stopped it on. When none of these is known (a stopped
 * app with no `servers`, after a node restart: the roster and the node's memory are empty), every
 * supervisor on the roster is asked whether it holds a record of the app, so `tcli start` still
 * finds it.
 */
export async function appTargets(opts: {
  uuid: string;
  servers: readonly string[];
  coordinator: RosterCoordinator;
  supervisorKey: string | undefined;
  remembered?: Iterable<string>;
}): Promise<string[]> {
  const names = new Set([...opts.servers, ...(opts.remembered ?? [])]);
  const runner = opts.coordinator.runnerFor(opts.uuid);
  if (runner?.parent) names.add(runner.parent);
  if (names.size > 0) return [...names].sort();
  const holders = await Promise.all(
    opts.coordinator
      .supervisors()
      .map(async (s) => ((await holdsRecord(s.address, opts.uuid, opts.supervisorKey)) ? s.name : undefined)),
  );
  return holders.filter((n): n is string => n !== undefined).sort();
}

/** True when the supervisor lists a runner record of `uuid` (running or stopped). */
async function holdsRecord(
  address: string,
  uuid: string,
  supervisorKey: string | undefined,
): Promise<boolean> {
  try {
    const res = await fetch(`${address.replace(/\/+$/, "")}/v1/apps`, {
      signal: AbortSignal.timeout(5_000),
      ...(supervisorKey ? { headers: { authorization: `Bearer ${supervisorKey}` } } : {}),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      return false;
    }
    const body = (await res.json()) as { apps?: Array<{ uuid?: unknown }> };
    return Array.isArray(body.apps) && body.apps.some((a) => a.uuid === uuid);
  } catch {
    return false;
  }
}
