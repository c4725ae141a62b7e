import type { MeshMode } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { createLogger } from "../core/log.js";
import { startNode } from "../node/index.js";
import { type OptionSpec, optionsHelp, parseListen, parseOptions, untilSignal } from "./flags.js";

const specs: OptionSpec[] = [
  {
    flag: "listen",
    env: "TABBIFY_NODE_LISTEN",
    help: "HOST:PORT to serve the API and the /app/<uuid> proxy on (TABBIFY_NODE_BIND is accepted too)",
  },
  { flag: "data", env: "TABBIFY_NODE_DATA_DIR", default: ".tabbify/node", help: "data directory" },
  {
    flag: "mesh",
    env: "TABBIFY_MESH",
    default: "local",
    help: "app addresses: local (loopback twins) or ula",
  },
  {
    flag: "peer-timeout-secs",
    env: "TABBIFY_PEER_TIMEOUT_SECS",
    default: "60",
    help: "drop roster peers silent for this long",
  },
];

const usage = "tabbify node [--listen HOST:PORT] [--data DIR] [--mesh local|ula]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, specs);
  if (opts.help) {
    process.stdout.write(
      `${optionsHelp(usage, specs)}\nThe node key comes from env TABBIFY_NODE_KEY only (never a flag, so it stays out of ps).\n`,
    );
    return 0;
  }
  const listen = parseListen(opts.values.listen ?? env.TABBIFY_NODE_BIND ?? "127.0.0.1:8090");
  const mesh = opts.values.mesh;
  if (mesh !== "local" && mesh !== "ula") {
    throw new TabbifyError("USAGE", `--mesh wants local or ula, got "${mesh}"`);
  }
  const timeoutSecs = Number(opts.values["peer-timeout-secs"]);
  if (!Number.isFinite(timeoutSecs) || timeoutSecs <= 0) {
    throw new TabbifyError(
      "USAGE",
      `--peer-timeout-secs wants a positive number, got "${opts.values["peer-timeout-secs"]}"`,
    );
  }
  const logger = createLogger("node");
  const nodeKey = env.TABBIFY_NODE_KEY || undefined;
  if (!nodeKey) logger.warn("TABBIFY_NODE_KEY is not set: authenticated routes answer 503");
  const node = await startNode({
    host: listen.host,
    port: listen.port,
    dataDir: opts.values.data,
    mesh: mesh as MeshMode,
    nodeKey,
    peerTimeoutMs: timeoutSecs * 1000,
    logger,
  });
  const signal = await untilSignal();
  logger.info("shutting down", { signal });
  await node.close();
  return 0;
}
