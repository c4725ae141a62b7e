/**
 * `tabbify mesh token --network N [--tags a,b] [--grant-ula ULA] [--ttl-secs S]
 * [--data DIR | --database URL]`: mints a join token from the node's store (where the signing key
 * lives, so every node sharing the store accepts it) and prints it as the last line.
 */
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { MeshAddressBook } from "../mesh/address-book.js";
import { mintJoinToken } from "../mesh/join-token.js";
import { NODE_DB_FILE } from "../node/node-store.js";
import { openStore } from "../store/index.js";
import { databaseOption, type OptionSpec, optionsHelp, parseOptions } from "./flags.js";

export const specs: OptionSpec[] = [
  { flag: "network", help: "the network the joiner belongs to (its tenant's); empty: the default network" },
  {
    flag: "tags",
    multiple: true,
    help: "tags the joiner gets, e.g. supervisor,node (repeat or comma-separated)",
  },
  {
    flag: "grant-ula",
    multiple: true,
    help: "a fixed infrastructure address the joiner may claim, e.g. fd5a:1f00:0:3::1 for the registry",
  },
  { flag: "ttl-secs", default: "86400", help: "how long the token is valid" },
  {
    flag: "data",
    env: "TABBIFY_NODE_DATA_DIR",
    help: "the node's data dir (its node.db holds the signing key)",
  },
  {
    flag: "database",
    help: "postgres://USER@HOST:PORT/DB, the nodes' shared store (a URL with a password: env TABBIFY_DATABASE_URL)",
  },
];

const usage =
  "tabbify mesh token --network N [--tags T,…] [--grant-ula ULA] [--ttl-secs S] [--data DIR | --database URL]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h") {
    process.stdout.write(optionsHelp(usage, specs));
    return command === undefined ? 2 : 0;
  }
  if (command !== "token")
    throw new TabbifyError("USAGE", `unknown mesh command "${command}"; usage: ${usage}`);
  const opts = parseOptions(rest, { TABBIFY_NODE_DATA_DIR: env.TABBIFY_NODE_DATA_DIR }, specs);
  if (opts.help) {
    process.stdout.write(optionsHelp(usage, specs));
    return 0;
  }
  const network = opts.values.network;
  if (network === undefined) throw new TabbifyError("USAGE", `--network is required; usage: ${usage}`);
  let database = databaseOption(opts.values.database, true);
  if (database === undefined && opts.values.data === undefined)
    database = databaseOption(env.TABBIFY_DATABASE_URL || undefined, false);
  if (database === undefined && opts.values.data === undefined) {
    throw new TabbifyError(
      "USAGE",
      "name the node's store: --data DIR or --database URL (or TABBIFY_DATABASE_URL)",
    );
  }
  const list = (name: string) =>
    (opts.lists[name] ?? [])
      .flatMap((s) => s.split(","))
      .map((s) => s.trim())
      .filter(Boolean);
  const store = database
    ? await openStore({ engine: "postgres", url: database })
    : await openStore({ engine: "sqlite", file: join(opts.values.data as string, NODE_DB_FILE) });
  try {
    const key = await new MeshAddressBook(store).joinKey();
    const token = await mintJoinToken(key, {
      network,
      tags: list("tags"),
      requested_ulas: list("grant-ula"),
      ttlSecs: Number(opts.values["ttl-secs"]),
    });
    process.stderr.write(`join token for network "${network}" (pass it as TABBIFY_MESH_JOIN_TOKEN):\n`);
    process.stdout.write(`${token}\n`);
  } finally {
    await store.close();
  }
  return 0;
}
