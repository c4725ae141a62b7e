/**
 * The transient upgrader: one process per platform upgrade, started by `tabbify up` (never by the
 * node it replaces, so it outlives the old node). It unpacks and verifies the release, asks `up`
 * to hand each role over in turn (supervisor, registry, auth, then the node last), checks the
 * new node itself, and records every step and the outcome in the node's store and audit chain.
 * A role that does not become ready stops the upgrade: every role moved so far goes back.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { AuditLog } from "../node/audit-log.js";
import type { Store } from "../store/index.js";
import { probeVersionReady } from "./handoff-probe.js";
import { addRoleOutcome, finishUpgrade, type RoleOutcome, updateUpgrade } from "./records.js";
import { type PlatformRelease, previousRelease, unpackRelease } from "./releases.js";

/** The order roles are handed over in: the node, which records and serves the API, last. */
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

/** Runs the upgrade to its end; resolves with the process exit code (0 only when completed). */
export async function runUpgrader(opts: UpgraderOptions): Promise<number> {
  const { store, id } = opts;
  const audit = new AuditLog(store);
  await updateUpgrade(store, id, { upgrader_pid: process.pid, phase: "unpack" });
  let target: PlatformRelease | undefined;
  const roles: RoleOutcome[] = [];
  const finish = async (error: string | null) => {
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
  } catch (err) {
    return finish(`unpack: ${(err as Error).message}`);
  } finally {
    if (opts.tarball) await rm(opts.tarball, { force: true });
  }
  await updateUpgrade(store, id, { to_version: target.version });

  for (const role of upgradeOrder) {
    await updateUpgrade(store, id, { phase: role });
    const swapped = await ask<SwapResult>(
      { type: "swap", role, version: target.version, dir: target.dir, timeoutMs: opts.roleTimeoutMs },
      "swap-result",
    );
    let error = swapped.ok ? undefined : (swapped.error ?? "not ready");
    if (!error && role === "node") {
      // The old node is gone now: whatever answers the port is the new one.
      const probe = await probeVersionReady(opts.nodeHost, opts.nodePort, target.version);
      if (!probe.ready) error = `the new node does not answer as ${target.version}: ${probe.reason}`;
    }
    const outcome: RoleOutcome = {
      role,
      ok: !error,
      ms: swapped.ms,
      ...(swapped.ready_ms !== undefined ? { ready_ms: swapped.ready_ms } : {}),
      ...(error ? { error } : {}),
    };
    roles.push(outcome);
    await addRoleOutcome(store, id, outcome);
    if (error) {
      await ask({ type: "revert" }, "reverted");
      return finish(`${role}: ${error}`);
    }
  }
  await updateUpgrade(store, id, { phase: "commit" });
  await ask({ type: "commit", version: target.version, dir: target.dir }, "committed");
  return finish(null);
}
