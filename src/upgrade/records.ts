/**
 * The store's record of platform upgrades. The upgrader writes every step; the node only reads,
 * except for one case: an upgrade left "in_progress" by an upgrader that no longer runs is closed
 * by whoever reads it, so no status stays "in progress" forever: as completed when the upgrader
 * had reached the commit and the reading node runs the target version, as failed otherwise.
 * On the upgrader's own host "no longer runs" is its pid gone; a node sharing a Postgres store
 * from another host goes by the upgrader's heartbeat instead.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { Store } from "../store/index.js";

export type UpgradeStatus = "in_progress" | "completed" | "failed";

export interface RoleOutcome {
  role: string;
  ok: boolean;
  /** From the new process's start until the old one had exited. */
  ms: number;
  /** From the new process's start until it answered with the new version and ready. */
  ready_ms?: number;
  error?: string;
}

export interface PlatformUpgrade {
  id: string;
  kind: "upgrade" | "rollback";
  status: UpgradeStatus;
  phase: string;
  from_version: string;
  to_version: string | null;
  upgrader_pid: number | null;
  upgrader_host: string | null;
  heartbeat_at: string | null;
  roles: RoleOutcome[];
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

/** How long a queued upgrade may wait for its upgrader to start before it counts as lost. */
const QUEUED_GRACE_MS = 60_000;
/** How often a running upgrader writes its heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** A heartbeat this old means the upgrader is gone (read from a host that cannot see its pid). */
const HEARTBEAT_LOST_MS = 60_000;

export async function createUpgrade(
  store: Store,
  row: { id: string; kind: PlatformUpgrade["kind"]; from_version: string },
): Promise<void> {
  await store.db
    .insertInto("platform_upgrades")
    .values({
      ...row,
      status: "in_progress",
      phase: "queued",
      to_version: null,
      upgrader_pid: null,
      upgrader_host: null,
      heartbeat_at: null,
      roles: "[]",
      error: null,
      created_at: new Date().toISOString(),
      finished_at: null,
    })
    .execute();
}

export async function updateUpgrade(
  store: Store,
  id: string,
  change: Partial<Pick<PlatformUpgrade, "phase" | "to_version" | "upgrader_pid" | "upgrader_host">>,
): Promise<void> {
  await store.db
    .updateTable("platform_upgrades")
    .set({ ...change, heartbeat_at: new Date().toISOString() })
    .where("id", "=", id)
    .execute();
}

/** The running upgrader's sign of life; `updateUpgrade` writes one too. */
export async function beatUpgrade(store: Store, id: string, at = new Date()): Promise<void> {
  await store.db
    .updateTable("platform_upgrades")
    .set({ heartbeat_at: at.toISOString() })
    .where("id", "=", id)
    .execute();
}

export async function addRoleOutcome(store: Store, id: string, outcome: RoleOutcome): Promise<void> {
  await store.transaction(async (trx) => {
    const row = await trx
      .selectFrom("platform_upgrades")
      .select("roles")
      .where("id", "=", id)
      .executeTakeFirst();
    const roles = row ? (JSON.parse(row.roles) as RoleOutcome[]) : [];
    roles.push(outcome);
    await trx
      .updateTable("platform_upgrades")
      .set({ roles: JSON.stringify(roles) })
      .where("id", "=", id)
      .execute();
  });
}

export async function finishUpgrade(
  store: Store,
  id: string,
  status: Exclude<UpgradeStatus, "in_progress">,
  error: string | null,
): Promise<void> {
  await store.db
    .updateTable("platform_upgrades")
    .set({ status, error, phase: "done", finished_at: new Date().toISOString() })
    .where("id", "=", id)
    .where("status", "=", "in_progress")
    .execute();
}

/** Whether `pid` is still the upgrader of upgrade `id` (a reused pid is someone else). */
export async function upgraderAlive(pid: number, id: string): Promise<boolean> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").includes(id);
  } catch {
    return false;
  }
}

function toUpgrade(
  row: {
    [K in keyof PlatformUpgrade]: K extends "roles" ? string : unknown;
  },
): PlatformUpgrade {
  return { ...(row as unknown as PlatformUpgrade), roles: JSON.parse(row.roles) as RoleOutcome[] };
}

/**
 * The upgrade as the store has it, after closing it when its upgrader is gone (see the module
 * comment). `runningVersion` is the version of the process reading.
 */
export async function readUpgrade(
  store: Store,
  id: string,
  runningVersion: string,
): Promise<PlatformUpgrade | undefined> {
  const row = await store.db
    .selectFrom("platform_upgrades")
    .selectAll()
    .where("id", "=", id)
    .executeTakeFirst();
  if (!row) return undefined;
  const upgrade = toUpgrade(row);
  if (upgrade.status !== "in_progress") return upgrade;
  const lost =
    upgrade.upgrader_pid === null
      ? Date.now() - Date.parse(upgrade.created_at) > QUEUED_GRACE_MS
      : upgrade.upgrader_host === null || upgrade.upgrader_host === hostname()
        ? !(await upgraderAlive(upgrade.upgrader_pid, id))
        : Date.now() - Date.parse(upgrade.heartbeat_at ?? upgrade.created_at) > HEARTBEAT_LOST_MS;
  if (!lost) return upgrade;
  // Only a commit makes an upgrade stick: before it, `up` hands every moved role back once the
  // upgrader is gone, so a reader that runs the new version mid-handoff proves nothing.
  const landed = upgrade.phase === "commit" && upgrade.to_version === runningVersion;
  const why =
    upgrade.upgrader_pid === null
      ? "the upgrader never started"
      : `the upgrader (pid ${upgrade.upgrader_pid}${upgrade.upgrader_host ? ` on ${upgrade.upgrader_host}` : ""}) exited before recording the outcome`;
  await finishUpgrade(store, id, landed ? "completed" : "failed", `${why}; the node runs ${runningVersion}`);
  return (await readUpgrade(store, id, runningVersion))!;
}

/** Every upgrade still in progress once lost ones are closed; the newest first. */
export async function openUpgrades(store: Store, runningVersion: string): Promise<PlatformUpgrade[]> {
  const rows = await store.db
    .selectFrom("platform_upgrades")
    .select("id")
    .where("status", "=", "in_progress")
    .orderBy("created_at", "desc")
    .execute();
  const open: PlatformUpgrade[] = [];
  for (const { id } of rows) {
    const upgrade = await readUpgrade(store, id, runningVersion);
    if (upgrade?.status === "in_progress") open.push(upgrade);
  }
  return open;
}
