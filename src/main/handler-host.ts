import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseList, runHandlerHost } from "../contract/handler-host.js";

/**
 * The entry of a deployed handler app: `node main/handler-host.js <handler.mjs>`. The node copies this
 * file and contract/handler-host.js next to the uploaded bundle; the contract's lists come from the env
 * the node sets.
 */
const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: handler-host.js <handler module>\n");
  process.exit(2);
}
await runHandlerHost(
  () => import(pathToFileURL(resolve(file)).href) as Promise<Record<string, unknown>>,
  {
    egress: parseList(process.env.TABBIFY_CONTRACT_EGRESS),
    cache: parseList(process.env.TABBIFY_CONTRACT_CACHE),
  },
  process.env,
);
