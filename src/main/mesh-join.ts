/**
 * `--mesh wireguard`: a role joins the WireGuard mesh before it serves. Reads the coordinator URL
 * and join token the role's flags and env gave it; the work is src/mesh/joiner.ts.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { MeshJoiner } from "../mesh/joiner.js";
import { WireGuardInterface } from "../mesh/wireguard.js";
import type { AddressManager } from "../supervisor/host.js";
import type { OptionSpec } from "./flags.js";

const exec = promisify(execFile);

export const meshJoinOptions: OptionSpec[] = [
  {
    flag: "coordinator",
    env: "TABBIFY_MESH_COORDINATOR",
    help: "--mesh wireguard: the node URL whose coordinator this host joins (join token in env TABBIFY_MESH_JOIN_TOKEN)",
  },
  {
    flag: "mesh-interface",
    env: "TABBIFY_MESH_INTERFACE",
    default: "tabbify0",
    help: "--mesh wireguard: the WireGuard interface's name (one per host or network namespace)",
  },
  {
    flag: "wg-listen-port",
    env: "TABBIFY_MESH_WG_PORT",
    default: "51820",
    help: "--mesh wireguard: UDP port WireGuard listens on",
  },
  {
    flag: "mesh-endpoint",
    env: "TABBIFY_MESH_ENDPOINT",
    help: "--mesh wireguard: IP:PORT peers reach this host's WireGuard at (default: the address the coordinator sees)",
  },
];

/** The app addresses this host serves: the fd5a:1f02 /128s on lo. */
async function appUlasOnLo(): Promise<string[]> {
  const { stdout } = await exec("ip", ["-6", "-j", "addr", "show", "dev", "lo"]);
  const parsed = JSON.parse(stdout) as { addr_info?: { local?: string }[] }[];
  return parsed
    .flatMap((i) => i.addr_info ?? [])
    .map((a) => a.local ?? "")
    .filter((a) => a.startsWith("fd5a:1f02:"));
}

/** `addresses`, calling `changed` after every address it adds or removes. */
export function announcing(addresses: AddressManager, changed: () => void): AddressManager {
  return {
    add: async (ula) => {
      await addresses.add(ula);
      changed();
    },
    remove: async (ula) => {
      await addresses.remove(ula);
      changed();
    },
  };
}

export async function joinMesh(opts: {
  values: Record<string, string | undefined>;
  env: NodeJS.ProcessEnv;
  dataDir: string;
  displayName: string;
  tags: string[];
  requestedUla?: string;
  logger: Logger;
}): Promise<MeshJoiner> {
  const coordinator = opts.values.coordinator;
  const token = opts.env.TABBIFY_MESH_JOIN_TOKEN;
  if (!coordinator)
    throw new TabbifyError("USAGE", "--mesh wireguard needs --coordinator URL (TABBIFY_MESH_COORDINATOR)");
  if (!token)
    throw new TabbifyError("USAGE", "--mesh wireguard needs a join token in env TABBIFY_MESH_JOIN_TOKEN");
  const port = Number(opts.values["wg-listen-port"]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TabbifyError("USAGE", "--wg-listen-port wants a UDP port number");
  }
  const logger = opts.logger.child("mesh");
  const joiner = new MeshJoiner({
    coordinatorUrl: coordinator,
    token,
    dataDir: opts.dataDir,
    displayName: opts.displayName,
    tags: opts.tags,
    listenPort: port,
    ...(opts.requestedUla ? { requestedUla: opts.requestedUla } : {}),
    ...(opts.values["mesh-endpoint"] ? { listenEndpoint: opts.values["mesh-endpoint"] } : {}),
    wg: new WireGuardInterface(opts.values["mesh-interface"] as string, logger),
    hostedAppUlas: appUlasOnLo,
    logger,
  });
  await joiner.start();
  return joiner;
}
