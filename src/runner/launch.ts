import { isAbsolute } from "node:path";
import type { Readable } from "node:stream";
import { TabbifyError } from "../core/errors.js";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";

/**
 * What a runner is told besides its flags, and never through its environment or argv (which
 * its workload, a child, could read in `/proc/<runner>/environ` or `ps`): the workload spec with
 * its env, the node key for the roster, and the user the workload runs as. A runner spawned for
 * an app reads it as one JSON line on its stdin; a warm spare gets the same fields in `assign`
 * on its control socket.
 */
export interface LaunchConfig {
  spec: WorkloadSpec;
  node_key?: string;
  user?: WorkloadUser;
}

/** The longest launch line a runner reads (a spec's env may be large, but not unbounded). */
export const MAX_LAUNCH_BYTES = 4 * 1024 * 1024;

function fail(message: string): never {
  throw new TabbifyError("USAGE", `launch config: ${message}`);
}

/** Checks a workload user: a uid and gid that are not root's, and an absolute home. */
export function checkWorkloadUser(value: unknown): WorkloadUser {
  if (typeof value !== "object" || value === null) fail("user must be an object");
  const { uid, gid, home } = value as Record<string, unknown>;
  for (const [name, id] of [
    ["uid", uid],
    ["gid", gid],
  ] as const) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 0xfffffffe)
      fail(`user.${name} must be an integer id other than root's`);
  }
  if (typeof home !== "string" || !isAbsolute(home)) fail("user.home must be an absolute path");
  return { uid: uid as number, gid: gid as number, home };
}

/** Parses the fields a runner takes besides its spec (shared by stdin and `assign`). */
export function launchExtras(raw: Record<string, unknown>): Omit<LaunchConfig, "spec"> {
  const extras: Omit<LaunchConfig, "spec"> = {};
  if (raw.node_key !== undefined) {
    if (typeof raw.node_key !== "string") fail("node_key must be a string");
    extras.node_key = raw.node_key;
  }
  if (raw.user !== undefined) extras.user = checkWorkloadUser(raw.user);
  return extras;
}

/** Parses the launch line; names fields, never values (they may be secrets). */
export function parseLaunchConfig(line: string): LaunchConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    fail("not JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("must be a JSON object");
  const record = raw as Record<string, unknown>;
  const spec = record.spec;
  if (typeof spec !== "object" || spec === null || typeof (spec as WorkloadSpec).runtime !== "string")
    fail("spec must be a workload spec with a runtime");
  return { spec: spec as WorkloadSpec, ...launchExtras(record) };
}

/** Reads `input` to its end (the supervisor closes it after one line) and parses it. */
export async function readLaunchConfig(input: Readable): Promise<LaunchConfig> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buf.length;
    if (size > MAX_LAUNCH_BYTES) fail(`longer than ${MAX_LAUNCH_BYTES} bytes`);
    chunks.push(buf);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") fail("stdin was empty: the supervisor writes the spec there");
  return parseLaunchConfig(text);
}
