import { existsSync } from "node:fs";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import type { AuditEvent, ChainResult } from "../ledger/chain.js";
import { verifyChainAsync } from "../ledger/chain.js";
import { readAuditChain } from "../node/audit-log.js";
import { NodeClient } from "../node/client.js";
import { NODE_DB_FILE } from "../node/node-store.js";
import { openStore, type Store } from "../store/index.js";
import { databaseOption, type OptionSpec, optionsHelp, parseOptions } from "./flags.js";

/**
 * `tabbify audit verify [--data DIR | --database URL | --node URL]`: recomputes every hash of the
 * audit chain from the store (SQLite file or Postgres) or from a node's API, and exits 0 when
 * every link holds, or 1 naming the first broken seq.
 */

export const specs: OptionSpec[] = [
  // No env twins for --data and --node: the source is named on the command line (see run()).
  { flag: "data", help: "a node's data dir: reads its embedded store (node.db)" },
  {
    flag: "database",
    help: "postgres://USER@HOST:PORT/DB, the nodes' shared store (a URL with a password: env TABBIFY_DATABASE_URL)",
  },
  { flag: "node", help: "a node's URL: reads GET /api/v1/audit with TABBIFY_NODE_KEY" },
];

const usage = "tabbify audit verify [--data DIR | --database URL | --node URL] (or env TABBIFY_DATABASE_URL)";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h") {
    process.stdout.write(optionsHelp(usage, specs));
    return command === undefined ? 2 : 0;
  }
  if (command !== "verify")
    throw new TabbifyError("USAGE", `unknown audit command "${command}"; usage: ${usage}`);
  // The source is named by a flag; only the database URL may come from the environment instead,
  // because a password on the command line would show in ps.
  const opts = parseOptions(rest, {}, specs);
  const databaseFromFlag = opts.values.database !== undefined;
  databaseOption(opts.values.database, true);
  if (opts.values.data === undefined && opts.values.node === undefined && !databaseFromFlag) {
    opts.values.database = databaseOption(env.TABBIFY_DATABASE_URL || undefined, false);
  }
  if (opts.help) {
    process.stdout.write(optionsHelp(usage, specs));
    return 0;
  }
  const sources = specs.filter((s) => opts.values[s.flag] !== undefined);
  if (sources.length !== 1)
    throw new TabbifyError("USAGE", `name exactly one of --data, --database, --node; usage: ${usage}`);
  let result: ChainResult;
  if (opts.values.node !== undefined) {
    const key = env.TABBIFY_NODE_KEY;
    if (!key) throw new TabbifyError("USAGE", "--node needs the node key in env TABBIFY_NODE_KEY");
    result = await verifyChainAsync(apiEvents(opts.values.node, key));
  } else {
    const store = await openSource(opts.values.data, opts.values.database);
    try {
      result = await verifyChainAsync(readAuditChain(store));
    } finally {
      await store.close();
    }
  }
  if (result.ok) {
    const head = result.head ? `head seq ${result.head.seq} ${result.head.event_hash}` : "empty chain";
    process.stdout.write(`audit chain intact: ${result.count} events, ${head}\n`);
    return 0;
  }
  process.stdout.write(`audit chain broken at seq ${result.broken.seq}: ${result.broken.reason}\n`);
  return 1;
}

async function openSource(dataDir: string | undefined, databaseUrl: string | undefined): Promise<Store> {
  if (databaseUrl !== undefined) return openStore({ engine: "postgres", url: databaseUrl });
  const file = join(dataDir as string, NODE_DB_FILE);
  // Never create an empty store where a node's was expected: a typo must not verify "0 events".
  if (!existsSync(file)) throw new TabbifyError("USAGE", `no node store at ${file}`);
  return openStore({ engine: "sqlite", file });
}

/** The chain as the API pages it, never held whole. */
async function* apiEvents(nodeUrl: string, key: string): AsyncGenerator<AuditEvent> {
  const node = new NodeClient({ url: nodeUrl, token: key, timeoutMs: 30_000 });
  let after = 0;
  for (;;) {
    const body = await node.auditPage(after, 1000);
    // The wire's events are the chain's rows; verifyChainAsync checks each one's hash.
    yield* (body.events ?? []) as AuditEvent[];
    if (body.next_after === undefined) return;
    after = body.next_after;
  }
}
