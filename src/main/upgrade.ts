/**
 * `tabbify upgrade`: the platform upgrade's command line.
 *
 *   tabbify upgrade --to <tarball> [--node URL]   upload a release and follow the upgrade
 *   tabbify upgrade --rollback [--node URL]       back to the release before the current one
 *   tabbify upgrade pack --out DIR [--version V]  build a release tarball from this built tree
 *   tabbify upgrade run ...                       the transient upgrader (started by `tabbify up`)
 *
 * The first two exit 0 only when the store records the upgrade as completed; otherwise they exit
 * 1 naming the role that failed and why.
 */
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { NodeClient } from "../node/client.js";
import {
  platformUpgrade,
  startPlatformRollback,
  startPlatformUpgrade,
  type UpgradeAccepted,
  type UpgradeRecordAnswer,
} from "../node/platform-client.js";
import { openStore } from "../store/index.js";
import { packStaged, stageRelease } from "../upgrade/pack.js";
import { runUpgrader } from "../upgrade/upgrader.js";
import { intOption, type OptionSpec, optionsHelp, parseOptions, required } from "./flags.js";

const clientOptions: OptionSpec[] = [
  { flag: "to", help: "the release tarball (`tabbify upgrade pack` makes one)" },
  { flag: "rollback", boolean: true, help: "go back to the release before the current one" },
  {
    flag: "restart-runners",
    boolean: true,
    help: "also restart every app's runner on the new release, one zero-downtime swap per app (else a runner's new version waits for the app's next swap)",
  },
  {
    flag: "node",
    env: "TABBIFY_NODE_URL",
    default: "http://127.0.0.1:8090",
    help: "the node to upgrade through",
  },
  {
    flag: "key-file",
    default: ".tabbify/node.key",
    help: "where the node key is when TABBIFY_NODE_KEY is not set (tabbify up keeps it in <data>/node.key)",
  },
  { flag: "timeout", default: "900", help: "seconds to wait for the upgrade to finish" },
];

const packOptions: OptionSpec[] = [
  { flag: "out", default: ".", help: "directory the tarball is written to" },
  { flag: "version", help: "the release's version (default: package.json's)" },
];

const runOptions: OptionSpec[] = [
  { flag: "id", help: "the upgrade's id (its row in the store)" },
  { flag: "data", help: "tabbify up's data dir" },
  { flag: "node-data", help: "the node's data dir (its store)" },
  { flag: "node-listen", help: "HOST:PORT the node serves on" },
  { flag: "from-version", help: "the version running now" },
  { flag: "from-dir", help: "the package root of the release running now" },
  { flag: "tarball", help: "the uploaded release" },
  { flag: "rollback", boolean: true, help: "roll back instead" },
  { flag: "restart-runners", boolean: true, help: "restart every runner once its supervisor is upgraded" },
  { flag: "supervisor-url", help: "tabbify up's own supervisor (every other one on the roster is remote)" },
  { flag: "role-timeout", default: "120", help: "seconds each role has to become ready" },
];

const usage =
  "tabbify upgrade (--to <tarball> | --rollback) [--restart-runners] [--node URL] | pack --out DIR | run ...";

/** The package root of this tree (dist/src/main → three levels up). */
const treeRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv[0] === "pack") return pack(argv.slice(1), env);
  if (argv[0] === "run") return upgrader(argv.slice(1), env);
  const opts = parseOptions(argv, env, clientOptions);
  if (opts.help) {
    process.stdout.write(
      `${optionsHelp(usage, clientOptions)}\n\`tabbify upgrade pack --help\` lists the packer's flags.\n`,
    );
    return 0;
  }
  const rollback = opts.flags.rollback === true;
  const tarball = opts.values.to;
  if (rollback === (tarball !== undefined))
    throw new TabbifyError("USAGE", "give exactly one of --to <tarball> or --rollback");
  const key = env.TABBIFY_NODE_KEY || (await readFile(opts.values["key-file"]!, "utf8")).trim();
  const node = new NodeClient({ url: opts.values.node!, token: key });
  // A poll that times out is retried: the node may be mid-handoff.
  const poll = new NodeClient({ url: opts.values.node!, token: key, timeoutMs: 5_000 });
  const timeoutMs = intOption(opts.values.timeout, "timeout") * 1000;

  const restartRunners = opts.flags["restart-runners"] === true;
  let accepted: UpgradeAccepted;
  try {
    accepted = tarball
      ? await startPlatformUpgrade(node, tarball, { restartRunners })
      : await startPlatformRollback(node, { restartRunners });
  } catch (err) {
    if (!(err instanceof TabbifyError)) throw err;
    process.stderr.write(`tabbify upgrade: the node refused: ${err.message} (${err.code})\n`);
    return 1;
  }
  process.stderr.write(`tabbify upgrade: ${accepted.id} started\n`);
  const deadline = Date.now() + timeoutMs;
  let shown = 0;
  for (;;) {
    await sleep(300);
    let upgrade: UpgradeRecordAnswer | undefined;
    try {
      upgrade = await platformUpgrade(poll, accepted.id);
    } catch {
      // The node may be mid-handoff; its port queues connections, so this is only a slow answer.
    }
    if (upgrade) {
      for (const role of upgrade.roles.slice(shown)) {
        process.stderr.write(
          `tabbify upgrade: ${role.role} ${!role.ok ? `FAILED: ${role.error}` : role.ready_ms === undefined ? `done in ${role.ms} ms` : `handed over in ${role.ms} ms (new one ready in ${role.ready_ms} ms)`}\n`,
        );
      }
      shown = upgrade.roles.length;
      if (upgrade.status === "completed") {
        process.stdout.write(`upgraded ${upgrade.from_version} -> ${upgrade.to_version} (${upgrade.id})\n`);
        return 0;
      }
      if (upgrade.status === "failed") {
        process.stderr.write(`tabbify upgrade: failed: ${upgrade.error} (${upgrade.id})\n`);
        return 1;
      }
    }
    if (Date.now() > deadline) {
      process.stderr.write(
        `tabbify upgrade: still in progress after ${timeoutMs / 1000} s (${accepted.id})\n`,
      );
      return 1;
    }
  }
}

async function pack(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, packOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify upgrade pack [--out DIR] [--version V]", packOptions));
    return 0;
  }
  const stage = await stageRelease(treeRoot, opts.values.version ? { version: opts.values.version } : {});
  process.stdout.write(`${await packStaged(stage, opts.values.out!)}\n`);
  return 0;
}

async function upgrader(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, runOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify upgrade run (started by tabbify up)", runOptions));
    return 0;
  }
  const v = opts.values;
  const [host, port] = required(v["node-listen"], "--node-listen").split(/:(?=\d+$)/);
  // The node's store: Postgres when `up` runs the node on one (the URL comes in env: it may hold
  // a password), else its SQLite file.
  const store = env.TABBIFY_DATABASE_URL
    ? await openStore({ engine: "postgres", url: env.TABBIFY_DATABASE_URL })
    : await openStore({ engine: "sqlite", file: join(required(v["node-data"], "--node-data"), "node.db") });
  try {
    return await runUpgrader({
      id: required(v.id, "--id"),
      dataDir: required(v.data, "--data"),
      store,
      running: {
        version: required(v["from-version"], "--from-version"),
        dir: required(v["from-dir"], "--from-dir"),
      },
      ...(v.tarball ? { tarball: v.tarball } : {}),
      rollback: opts.flags.rollback === true,
      nodeHost: host!,
      nodePort: Number(port),
      roleTimeoutMs: intOption(v["role-timeout"], "role-timeout") * 1000,
      supervisorUrl: required(v["supervisor-url"], "--supervisor-url"),
      nodeKey: required(env.TABBIFY_NODE_KEY, "TABBIFY_NODE_KEY"),
      supervisorKey: required(env.TABBIFY_SUPERVISOR_KEY, "TABBIFY_SUPERVISOR_KEY"),
      restartRunners: opts.flags["restart-runners"] === true,
      log: (line) => process.stderr.write(`tabbify upgrade: ${line}\n`),
    });
  } finally {
    await store.close();
    process.disconnect?.();
  }
}
