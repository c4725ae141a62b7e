import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { loadOrCreateKeyFile, readKeyFile } from "../core/key-file.js";
import type { Logger } from "../core/log.js";

/**
 * The supervisor's API key: `SUPERVISOR_API_KEY` when set, else the file `--api-key-file` names
 * (which must exist), else `<data>/api.key`, created 0600 on first start. It must differ from the
 * node key: whoever learns a supervisor's key can run commands on that host, not administer the node.
 */
export async function supervisorApiKey(
  dataDir: string,
  keyFile: string | undefined,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<string> {
  const key = await chosenKey(dataDir, keyFile, env, logger);
  if (env.TABBIFY_NODE_KEY !== undefined && key === env.TABBIFY_NODE_KEY) {
    throw new TabbifyError(
      "USAGE",
      "the supervisor API key is the node key; give the supervisor a key of its own (SUPERVISOR_API_KEY or <data>/api.key)",
    );
  }
  return key;
}

async function chosenKey(
  dataDir: string,
  keyFile: string | undefined,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<string> {
  if (env.SUPERVISOR_API_KEY) {
    logger.info("API key from SUPERVISOR_API_KEY");
    return env.SUPERVISOR_API_KEY;
  }
  if (keyFile) {
    logger.info("API key from file", { path: keyFile });
    return readKeyFile(keyFile);
  }
  const path = join(dataDir, "api.key");
  const { key, created } = await loadOrCreateKeyFile(path);
  logger.info(created ? "API key created" : "API key from file", { path });
  return key;
}
