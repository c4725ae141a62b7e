/**
 * The transient upgrader: one process per platform upgrade, started by `tabbify up` (never by the
 * node it replaces, so it outlives the old node). It unpacks and verifies the release, asks `up`
 * to hand each role over in turn (supervisor, registry, auth, then the node last), checks the
 * new node itself, and records every step and the outcome in the node's store and audit chain.
 * A role that does not become ready stops the upgrade: every role moved so far goes back.
 */
import { rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { AuditLog } from "../node/audit-log.js";
import { NodeClient } from "../node/client.js";
import { type TopologyAnswer, topology } from "../node/platform-client.js";
import type { Store } from "../store/index.js";
import { type SupervisorAnswer, SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import { probeVersionReady } from "./handoff-probe.js";
import {
  addRoleOutcome,
  beatUpgrade,
  finishUpgrade,
  HEARTBEAT_INTERVAL_MS,
  type RoleOutcome,
  updateUpgrade,
} from "./records.js";
import { type PlatformRelease, previousRelease, unpackRelease } from "./releases.js";

/**
 * The order roles are handed over in: `up`'s supervisor, then every other supervisor on the
 * node's roster in turn, the registry, auth, and the node, which records and serves the API, last.
 */
export const upgradeOrder = ["supervisor", "registry", "auth", "node"] as const;

export interface UpgraderOptions {
  id: string;
  dataDir: string;
  store: Store;
  running: PlatformRelease;
  tarball?: string;
  rollback: boolean;
  /** Where the node listens, to check the new node from outside once `up` handed it over. */
  nodeHost: string;
  nodePort: number;
  roleTimeoutMs: number;
  /** `up`'s own supervisor, which `up` hands over; every other one on the roster is remote. */
  supervisorUrl: string;
  /** Read from the environment `up` gave: never argv. */
  nodeKey: string;
  supervisorKey: string;
  /** Restart every runner with a zero-downtime swap once its supervisor runs the new release. */
  restartRunners: boolean;
  log: (line: string) => void;
}

/** Request/answer over the IPC channel to `up`. */
function ask<T extends { type: string }>(message: object, answer: T["type"]): Promise<T> {
  return new Promise((done, fail) => {
    if (!process.send) return fail(new TabbifyError("USAGE", "the upgrader runs only under tabbify up"));
    const onMessage = (m: unknown) => {
      if ((m as { type?: unknown })?.type !== answer) return;
      process.off("message", onMessage);
      done(m as T);
    };
    process.on("message", onMessage);
    process.send(message);
  });
}

interface SwapResult {
  type: "swap-result";
  ok: boolean;
  ms: number;
  ready_ms?: number;
  error?: string;
}

/** One step of the upgrade: a role to hand over, or a supervisor's runners to restart. */
type Step =
  | { kind: "swap"; role: string; address?: string }
  | { kind: "runners"; role: string; address: string };

/** Supervisors on the node's roster other than `up`'s own, by name and API address. */
async function remoteSupervisors(opts: UpgraderOptions): Promise<{ name: string; address: string }[]> {
  const node = new NodeClient({ url: `http://${opts.nodeHost}:${opts.nodePort}`, token: opts.nodeKey });
  let roster: TopologyAnswer;
  try {
    roster = await topology(node);
  } catch (err) {
    throw new TabbifyError("ROLE_NOT_READY", `the node's roster: ${(err as Error).message}`);
  }
  const local = new URL(opts.supervisorUrl).origin;
  return roster.supervisors
    .filter((s) => new URL(s.address).origin !== local)
    .map((s) => ({ name: s.display_name, address: s.address }));
}

/** Asks a supervisor to restart each of its runners with a zero-downtime swap (runner-restart.ts). */
async function restartRunners(address: string, key: string, timeoutMs: number): Promise<string | undefined> {
  let body: SupervisorAnswer<"restartRunners">;
  try {
    body = await new SupervisorApi({ baseUrl: new URL(address).origin, authToken: key }).restartRunners({
      timeoutMs,
    });
  } catch (err) {
    if (supervisorRefusal(err) && err instanceof Error) return err.message;
    throw err;
  }
  const failed = body.failed ?? [];
  return failed.length > 0 ? failed.map((f) => `${f.uuid}: ${f.error}`).join("; ") : undefined;
}

/** Runs the upgrade to its end; resolves with the process exit code (0 only when completed). */
export async function runUpgrader(opts: UpgraderOptions): Promise<number> {
  const { store, id } = opts;
  const audit = new AuditLog(store);
  await updateUpgrade(store, id, { upgrader_pid: process.pid, upgrader_host: hostname(), phase: "unpack" });
  // A node on another host sharing a Postgres store tells a live upgrader from a lost one by this.
  const heartbeat = setInterval(() => {
    beatUpgrade(store, id).catch(() => {});
  }, HEARTBEAT_INTERVAL_MS);
  let target: PlatformRelease | undefined;
  const roles: RoleOutcome[] = [];
  const finish = async (error: string | null) => {
    clearInterval(heartbeat);
    if (opts.tarball) await rm(opts.tarball, { force: true });
    await finishUpgrade(store, id, error ? "failed" : "completed", error);
    await audit.record({
      actor: "node-key",
      action: error ? "platform.upgrade.failed" : "platform.upgrade.completed",
      subject: id,
      before: { version: opts.running.version },
      after: { version: error ? opts.running.version : target?.version, roles, ...(error ? { error } : {}) },
    });
    opts.log(error ? `upgrade ${id} failed: ${error}` : `upgrade ${id} completed: ${target?.version}`);
    return error ? 1 : 0;
  };
  let steps: Step[];
  try {
    if (opts.rollback) {
      target = await previousRelease(opts.dataDir);
      if (!target) throw new TabbifyError("RELEASE_NOT_FOUND", "no earlier release to roll back to");
    } else {
      target = await unpackRelease(opts.dataDir, opts.tarball!, {
        nodeModules: join(opts.running.dir, "node_modules"),
        running: opts.running,
      });
    }
    const remotes = await remoteSupervisors(opts);
    const runners = (role: string, address: string): Step[] =>
      opts.restartRunners ? [{ kind: "runners", role, address }] : [];
    steps = [
      { kind: "swap", role: "supervisor" },
      ...runners("supervisor", opts.supervisorUrl),
      ...remotes.flatMap(({ name, address }): Step[] => [
        { kind: "swap", role: `supervisor@${name}`, address },
        ...runners(`supervisor@${name}`, address),
      ]),
      ...upgradeOrder.slice(1).map((role): Step => ({ kind: "swap", role })),
    ];
  } catch (err) {
    return finish(`unpack: ${(err as Error).message}`);
  }
  await updateUpgrade(store, id, { to_version: target.version });

  for (const step of steps) {
    const began = Date.now();
    let outcome: RoleOutcome;
    if (step.kind === "runners") {
      const error = await restartRunners(step.address, opts.supervisorKey, opts.roleTimeoutMs * 5).catch(
        (err: Error) => err.message,
      );
      outcome = {
        role: `runners of ${step.role}`,
        ok: !error,
        ms: Date.now() - began,
        ...(error ? { error: `restarting runners: ${error}` } : {}),
      };
    } else {
      await updateUpgrade(store, id, {
        phase: step.role.startsWith("supervisor@") ? "supervisor" : step.role,
      });
      const swapped = await ask<SwapResult>(
        {
          type: "swap",
          role: step.role,
          version: target.version,
          dir: target.dir,
          timeoutMs: opts.roleTimeoutMs,
          ...(step.address
            ? { address: step.address, ...(opts.tarball ? { tarball: opts.tarball } : {}) }
            : {}),
        },
        "swap-result",
      );
      let error = swapped.ok ? undefined : (swapped.error ?? "not ready");
      if (!error && step.role === "node") {
        // The old node is gone now: whatever answers the port is the new one.
        const probe = await probeVersionReady(opts.nodeHost, opts.nodePort, target.version);
        if (!probe.ready) error = `the new node does not answer as ${target.version}: ${probe.reason}`;
      }
      outcome = {
        role: step.role,
        ok: !error,
        ms: swapped.ms,
        ...(swapped.ready_ms !== undefined ? { ready_ms: swapped.ready_ms } : {}),
        ...(error ? { error } : {}),
      };
    }
    roles.push(outcome);
    await addRoleOutcome(store, id, outcome);
    if (!outcome.ok) {
      await ask({ type: "revert" }, "reverted");
      return finish(`${outcome.role}: ${outcome.error}`);
    }
  }
  await updateUpgrade(store, id, { phase: "commit" });
  await ask({ type: "commit", version: target.version, dir: target.dir }, "committed");
  return finish(null);
}
