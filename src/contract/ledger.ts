import { createReadStream } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { isErrno, TabbifyError } from "../core/errors.js";
import { PROOF_KINDS, type ProofRow } from "./types.js";

export { PROOF_KINDS, type ProofKind, type ProofRow } from "./types.js";

/**
 * `.tabbify/proofs.jsonl`: append-only, one proof row per line (SEED-FACTS §6). Rows carry only
 * contract-derived identifiers (names, hosts, patterns, flags, the sha): never env values. It is
 * read line by line, keeping only the rows a question needs.
 */

export const LEDGER_FILE = ".tabbify/proofs.jsonl";

function invalid(where: string, why: string): TabbifyError {
  return new TabbifyError("INVALID_LEDGER_LINE", `${where}: not a proof row (${why})`);
}

/** Parses one line; missing ts/kind/handlerPath/facts or an unknown kind is INVALID_LEDGER_LINE. */
export function parseProofRow(line: string, where: string): ProofRow {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw invalid(where, "not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalid(where, "not an object");
  const row = value as Record<string, unknown>;
  if (typeof row.ts !== "number") throw invalid(where, "ts missing");
  if (typeof row.kind !== "string") throw invalid(where, "kind missing");
  if (!(PROOF_KINDS as readonly string[]).includes(row.kind))
    throw invalid(where, `unknown kind "${row.kind.slice(0, 32)}"`);
  if (typeof row.handlerPath !== "string") throw invalid(where, "handlerPath missing");
  const facts = row.facts as Record<string, unknown> | undefined;
  if (typeof facts !== "object" || facts === null || typeof facts.contractSha !== "string")
    throw invalid(where, "facts missing");
  return value as ProofRow;
}

export async function appendProofRow(file: string, row: ProofRow): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await appendFile(file, `${JSON.stringify(row)}\n`, { mode: 0o644 });
}

/** Calls `visit` for each row in order; a missing file has no rows. */
export async function scanLedger(
  file: string,
  visit: (row: ProofRow, index: number) => void,
): Promise<number> {
  const stream = createReadStream(file, { encoding: "utf8" });
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === "") continue;
      visit(parseProofRow(line, `${file}:${lineNo}`), n++);
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return 0;
    throw err;
  } finally {
    lines.close();
    stream.destroy();
  }
  return n;
}

/** A row with the row before it (its baseline). */
export interface ResolvedRow {
  row: ProofRow;
  baseline: ProofRow | undefined;
  index: number;
}

/** `HEAD`, `HEAD~N` or a unique contract-sha prefix (at least 4 hex). */
export async function resolveRef(file: string, ref: string): Promise<ResolvedRow> {
  const head = /^HEAD(?:~(\d+))?$/.exec(ref);
  if (head) {
    const back = Number(head[1] ?? 0);
    const ring: ProofRow[] = [];
    const total = await scanLedger(file, (row) => {
      ring.push(row);
      if (ring.length > back + 2) ring.shift();
    });
    if (total === 0) throw new TabbifyError("LEDGER_EMPTY", `no proof rows yet in ${file}: deploy first`);
    const index = total - 1 - back;
    if (index < 0) throw new TabbifyError("REF_NOT_FOUND", `${ref}: the ledger has only ${total} row(s)`);
    const at = ring.length - 1 - back;
    return { row: ring[at]!, baseline: at > 0 ? ring[at - 1] : undefined, index };
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) {
    throw new TabbifyError(
      "USAGE",
      `${ref.slice(0, 80)}: a ref is HEAD, HEAD~N or a contract sha prefix (4+ hex)`,
    );
  }
  const matches: ResolvedRow[] = [];
  let prev: ProofRow | undefined;
  await scanLedger(file, (row, index) => {
    if (row.facts.contractSha.startsWith(ref)) matches.push({ row, baseline: prev, index });
    prev = row;
  });
  if (matches.length === 0)
    throw new TabbifyError("REF_NOT_FOUND", `no proof row has a contract sha starting ${ref}`);
  const shas = new Set(matches.map((m) => m.row.facts.contractSha));
  if (shas.size > 1)
    throw new TabbifyError("REF_AMBIGUOUS", `${ref} matches ${shas.size} contracts: give more of the sha`);
  return matches[matches.length - 1]!;
}
