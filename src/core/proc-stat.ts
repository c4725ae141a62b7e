import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** What callers read from `/proc/<pid>/stat` (proc(5)). */
export interface ProcStat {
  /** `R`, `S`, `Z` (zombie), ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** CPU time in user and kernel mode, in clock ticks (`getconf CLK_TCK`, 100 on Linux). */
  utimeTicks: number;
  stimeTicks: number;
}

/**
 * Parses the text of `/proc/<pid>/stat`. The command name (field 2) sits in parentheses and may
 * itself hold spaces and `)`, so the fields are read after its LAST `)`. Undefined if malformed.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(")");
  if (close === -1) return undefined;
  // After ") ": field 3 (state) is at index 0, ppid 1, pgrp 2, utime 11, stime 12.
  const fields = text.slice(close + 2).split(" ");
  const [state, ppid, pgrp, utime, stime] = [fields[0], fields[1], fields[2], fields[11], fields[12]].map(
    (f) => f ?? "",
  ) as [string, string, string, string, string];
  const numbers = [ppid, pgrp, utime, stime].map((f) => (/^\d+$/.test(f) ? Number(f) : Number.NaN));
  if (!/^[A-Za-z]$/.test(state) || numbers.some(Number.isNaN)) return undefined;
  return {
    state,
    ppid: numbers[0]!,
    pgrp: numbers[1]!,
    utimeTicks: numbers[2]!,
    stimeTicks: numbers[3]!,
  };
}

/** `/proc/<pid>/stat`, parsed; undefined when the process is gone (or the file is malformed). */
export async function readProcStat(pid: number | string): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return text === undefined ? undefined : parseProcStat(text);
}

/** readProcStat for synchronous callers (benches and tests scanning /proc). */
export function readProcStatSync(pid: number | string): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}
