/**
 * `tabbify address <uuid>` / `tabbify address --repo <url>`: the addresses an app gets. A pure
 * computation (src/core/address.ts decides; this only prints), handy when wiring DNS, curl or a
 * firewall by hand.
 */
import {
  APP_PORT,
  appUuidFromRepo,
  deriveAppLoopback,
  deriveAppUla,
  environmentUuid,
  parseAppUuid,
} from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { type OptionSpec, optionsHelp, parseOptions } from "./flags.js";

const options: OptionSpec[] = [
  { flag: "repo", help: "print the uuid a repository URL gets (UUID v5, URL namespace) and its addresses" },
  {
    flag: "env",
    help: "print the uuid and addresses of that environment of the app (prod is the app's own)",
  },
  { flag: "json", boolean: true, help: "print one JSON object instead of text" },
];
const usage = "tabbify address <uuid> | tabbify address --repo <url> [--env <name>] [--json]";

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const parsed = parseOptions(argv, env, options, { allowPositionals: true });
  if (parsed.help) {
    process.stdout.write(optionsHelp(usage, options));
    return 0;
  }
  const repo = parsed.values.repo;
  const [given, ...extra] = parsed.positionals;
  if (extra.length > 0 || (repo !== undefined) === (given !== undefined)) {
    throw new TabbifyError("USAGE", `give exactly one of <uuid> or --repo <url>; usage: ${usage}`);
  }
  const appUuid = repo !== undefined ? appUuidFromRepo(repo) : parseAppUuid(given!);
  const environment = parsed.values.env;
  const uuid = environment !== undefined ? environmentUuid(appUuid, environment) : appUuid;
  const result = {
    ...(repo !== undefined ? { repo } : {}),
    ...(environment !== undefined ? { app_uuid: appUuid, env: environment } : {}),
    uuid,
    ula: deriveAppUla(uuid),
    local: deriveAppLoopback(uuid),
    port: APP_PORT,
  };
  if (parsed.flags.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  const lines = [
    ...(repo !== undefined ? [`repo   ${repo}`] : []),
    ...(environment !== undefined ? [`app    ${appUuid}`, `env    ${environment}`] : []),
    `uuid   ${uuid}`,
    `ula    ${result.ula}   (mesh mode ula:   http://[${result.ula}]:${APP_PORT}/)`,
    `local  ${result.local}   (mesh mode local: http://${result.local}:${APP_PORT}/)`,
    `port   ${APP_PORT}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}
