import { readFile } from "node:fs/promises";
import { type ControlReply, controlRequest, type HealthReply } from "../runner/control.js";
import type { RunnerRecord } from "./records.js";

/**
 * Whether a recorded runner is really this app's: adoption, retirement and every row rest on the
 * answer, and a pid or socket path reused by someone else must never be taken for ours.
 */
export type Proof =
  | { kind: "ours"; health: HealthReply }
  | { kind: "foreign"; message: string }
  | { kind: "silent"; message: string };

/** Proves a runner through its control socket: it must answer health for this uuid and address. */
export async function prove(record: RunnerRecord): Promise<Proof> {
  let reply: ControlReply;
  try {
    reply = await controlRequest(record.control_sock, { cmd: "health" }, { timeoutMs: 2_000 });
  } catch (err) {
    return { kind: "silent", message: (err as Error).message };
  }
  if (reply.reply !== "health") return { kind: "foreign", message: `health answered with "${reply.reply}"` };
  if (reply.app_uuid !== record.uuid || reply.app_ula !== record.app_ula) {
    return {
      kind: "foreign",
      message: `the socket answers for app ${String(reply.app_uuid).slice(0, 64)}, not ${record.uuid}`,
    };
  }
  if (record.pid !== null && reply.pid !== record.pid) {
    return {
      kind: "foreign",
      message: `the socket answers from pid ${reply.pid}, not the recorded ${record.pid}`,
    };
  }
  return { kind: "ours", health: reply };
}

export async function healthOf(record: RunnerRecord): Promise<HealthReply | undefined> {
  const proof = await prove(record);
  return proof.kind === "ours" ? proof.health : undefined;
}

/**
 * Whether `pid` runs `tabbify runner --uuid <uuid>` (guards against a reused pid). An assigned
 * spare says so in its process title, which /proc shows as one space-separated string.
 */
export async function isRunnerProcess(pid: number, uuid: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const args = cmdline.split(/[\0 ]+/);
  const i = args.indexOf("--uuid");
  return args.includes("runner") && i >= 0 && args[i + 1] === uuid;
}

export async function socketAnswers(path: string): Promise<boolean> {
  return controlRequest(path, { cmd: "ping" }, { timeoutMs: 1_000 }).then(
    () => true,
    () => false,
  );
}
