import { environmentUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { SupervisorApi } from "../supervisor/client.js";
import type { AppRegistry } from "./apps-registry.js";
import type { App } from "./apps-schema.js";

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
    const body = await new SupervisorApi({ baseUrl: address, authToken: supervisorKey }).list({
      timeoutMs: 5_000,
    });
    return Array.isArray(body.apps) && body.apps.some((a) => a.uuid === uuid);
  } catch {
    return false;
  }
}

/**
 * The environment a request names (`?env=`), checked against the app's list, and the uuid its
 * workloads run as. Unnamed means the app's own uuid (what a push or a direct deploy runs), which
 * is prod's (core/address.ts), or the app's first environment when it has no prod.
 */
export function environmentOf(
  target: { name: string; uuid: string; environments: readonly string[] },
  asked: unknown,
): { environment: string; runAs: string } {
  if (asked === undefined || asked === "") {
    const environment = target.environments.includes("prod") ? "prod" : (target.environments[0] ?? "prod");
    return { environment, runAs: target.uuid };
  }
  if (typeof asked !== "string" || !target.environments.includes(asked)) {
    throw new TabbifyError(
      "ENV_INVALID",
      `app ${target.name} has no environment "${String(asked).slice(0, 40)}" (it has ${target.environments.join(", ")})`,
    );
  }
  return { environment: asked, runAs: environmentUuid(target.uuid, asked) };
}

/** The app and environment whose workloads run as `uuid` (the app's own uuid: see environmentOf). */
export async function appRunningAs(
  registry: AppRegistry,
  uuid: string,
): Promise<{ app: App; environment: string } | undefined> {
  const own = await registry.byUuid(uuid);
  if (own) return { app: own, environment: environmentOf(own, undefined).environment };
  for (const app of await registry.list({ actor: "supervisor" })) {
    for (const environment of app.environments) {
      if (environmentOf(app, environment).runAs === uuid) return { app, environment };
    }
  }
  return undefined;
}
