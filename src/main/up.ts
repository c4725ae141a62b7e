import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { dockerDaemonAnswers } from "../core/docker-cli.js";
import { loadOrCreateKeyFile } from "../core/key-file.js";
import { createLogger } from "../core/log.js";
import { tabbifyVersion } from "../core/version.js";
import { bindSharedListener } from "../upgrade/listener-handoff.js";
import { currentRelease, type PlatformRelease, releaseEntry } from "../upgrade/releases.js";
import { UpgradeControl } from "../upgrade/up-control.js";
import { type OptionSpec, optionsHelp, parseOptions, untilSignal } from "./flags.js";
import { applyLogOptions, logArgs, logOptions } from "./log-options.js";
import { roleEnv } from "./role-env.js";
import { KeptRole, type RoleSpec, tabbifyEntry } from "./up-roles.js";
import { assertPortsFree, clearUpState, writeUpState } from "./up-state.js";

export const upOptions: OptionSpec[] = [
  { flag: "data", env: "TABBIFY_DATA_DIR", default: ".tabbify", help: "where every role keeps its state" },
  { flag: "host", env: "TABBIFY_HOST", default: "127.0.0.1", help: "loopback address every role listens on" },
  {
    flag: "node-port",
    env: "TABBIFY_NODE_PORT",
    default: "8090",
    help: "node: deploy API and /app/<uuid> proxy",
  },
  { flag: "registry-port", env: "TABBIFY_REGISTRY_PORT", default: "5000", help: "OCI registry /v2" },
  { flag: "auth-port", env: "TABBIFY_AUTH_PORT", default: "8091", help: "auth: POST /v1/validate" },
  {
    flag: "supervisor-port",
    env: "TABBIFY_SUPERVISOR_PORT",
    default: "8730",
    help: "the local supervisor's API",
  },
  { flag: "name", env: "SUPERVISOR_NAME", default: "local", help: "the local supervisor's display name" },
  {
    flag: "data-plane",
    env: "TABBIFY_DATA_PLANE",
    default: "node",
    help: "who serves the node's /app/<uuid>: node, nginx, caddy or haproxy (see tabbify node --help)",
  },
  { flag: "quiet", boolean: true, help: "do not echo the roles' logs" },
  ...logOptions,
];

/** The node key: TABBIFY_NODE_KEY when set, else one kept in `<data>/node.key` (mode 0600). */
async function nodeKey(dataDir: string, env: NodeJS.ProcessEnv): Promise<{ key: string; source: string }> {
  if (env.TABBIFY_NODE_KEY) return { key: env.TABBIFY_NODE_KEY, source: "TABBIFY_NODE_KEY" };
  const path = join(dataDir, "node.key");
  return { key: (await loadOrCreateKeyFile(path)).key, source: path };
}

/**
 * The local supervisor's API key: SUPERVISOR_API_KEY when set, else its own `api.key` in its data
 * dir, created here (0600) so the node can be told where it is before the supervisor first starts.
 */
async function supervisorKey(
  supervisorDir: string,
  env: NodeJS.ProcessEnv,
): Promise<{ key: string; source: string }> {
  if (env.SUPERVISOR_API_KEY) return { key: env.SUPERVISOR_API_KEY, source: "SUPERVISOR_API_KEY" };
  await mkdir(supervisorDir, { recursive: true, mode: 0o700 });
  const path = join(supervisorDir, "api.key");
  return { key: (await loadOrCreateKeyFile(path)).key, source: path };
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, upOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify up [flags]", upOptions));
    return 0;
  }
  const logging = applyLogOptions(opts.values);
  const dataDir = resolve(opts.values.data!);
  const host = opts.values.host!;
  const echo = !opts.flags.quiet;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await assertPortsFree(
    host,
    Object.fromEntries(
      ["node-port", "registry-port", "auth-port", "supervisor-port"].map((f) => [f, opts.values[f]!]),
    ),
    dataDir,
  );
  const { key, source: keySource } = await nodeKey(dataDir, env);

  const url = (port: string) => `http://${host}:${port}`;
  const authUrl = url(opts.values["auth-port"]!);
  const registryUrl = url(opts.values["registry-port"]!);
  const nodeUrl = url(opts.values["node-port"]!);
  const supervisorUrl = url(opts.values["supervisor-port"]!);
  const storeDir = join(dataDir, "artifacts");
  const supervisorDir = join(dataDir, "supervisor");
  const supKey = await supervisorKey(supervisorDir, env);
  // Secrets reach the children through env or files only, never argv (argv is world-readable in
  // /proc), and each role gets only the variables it reads (role-env.ts).
  const supKeyFromEnv = supKey.source === "SUPERVISOR_API_KEY";
  const nodeEnv = roleEnv("node", env, {
    TABBIFY_NODE_KEY: key,
    ...(supKeyFromEnv ? { TABBIFY_SUPERVISOR_KEY: supKey.key } : {}),
  });
  // The node must use the key of the supervisor `up` runs, not one left in the shell.
  if (!supKeyFromEnv) delete nodeEnv.TABBIFY_SUPERVISOR_KEY;
  const supervisorEnv = roleEnv("supervisor", env, {
    TABBIFY_NODE_KEY: key,
    ...(supKeyFromEnv ? { SUPERVISOR_API_KEY: supKey.key } : {}),
  });

  // The platform runs the current release when an upgrade installed one, else this tree.
  const running: PlatformRelease = (await currentRelease(dataDir)) ?? {
    version: tabbifyVersion,
    dir: resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", ".."),
  };
  const entry = releaseEntry(running);
  // up holds each role's listening socket, so replacing a role's process never refuses a connection.
  const listener = (port: string) => bindSharedListener(host, Number(port));

  const builder = await dockerDaemonAnswers(5_000);
  const upLog = createLogger("up");
  const say = (line: string) => upLog.info(line);
  const specs: RoleSpec[] = [
    {
      name: "auth",
      args: [
        "auth",
        "--listen",
        `${host}:${opts.values["auth-port"]}`,
        "--data",
        join(dataDir, "auth"),
        ...logArgs(logging),
      ],
      env: roleEnv("auth", env),
      readyUrl: `${authUrl}/health`,
      listener: listener(opts.values["auth-port"]!),
      entry,
    },
    {
      name: "registry",
      args: [
        "registry",
        "--listen",
        `${host}:${opts.values["registry-port"]}`,
        "--data",
        join(dataDir, "registry"),
        "--auth-url",
        authUrl,
        ...logArgs(logging),
      ],
      env: roleEnv("registry", env),
      readyUrl: `${registryUrl}/v2/`,
      listener: listener(opts.values["registry-port"]!),
      entry,
    },
    {
      name: "node",
      args: [
        "node",
        "--listen",
        `${host}:${opts.values["node-port"]}`,
        "--data",
        join(dataDir, "node"),
        "--registry",
        new URL(registryUrl).host,
        "--auth-data",
        join(dataDir, "auth"),
        ...(supKeyFromEnv ? [] : ["--supervisor-key-file", supKey.source]),
        // The all-in-one stack lives on loopback, and so do the git servers it is tried with.
        "--allow-private-repos",
        "--data-plane",
        opts.values["data-plane"]!,
        // Loopback-only and single-user: the user's own repositories on disk may be deployed.
        "--allow-local-repos",
        ...logArgs(logging),
      ],
      env: nodeEnv,
      readyUrl: `${nodeUrl}/health`,
      listener: listener(opts.values["node-port"]!),
      entry,
    },
    {
      name: "supervisor",
      args: [
        "supervisor",
        "--name",
        opts.values.name!,
        "--listen",
        `${host}:${opts.values["supervisor-port"]}`,
        "--data",
        supervisorDir,
        "--node",
        nodeUrl,
        "--mesh",
        "local",
        "--store",
        "local",
        "--store-dir",
        storeDir,
        // The local supervisor builds images (git push deploys) whenever a Docker daemon answers,
        // also one started after up: it advertises `builder` once the daemon answers.
        "--builder",
        "--allow-private-repos",
        ...logArgs(logging),
      ],
      env: supervisorEnv,
      readyUrl: `${supervisorUrl}/health`,
      listener: listener(opts.values["supervisor-port"]!),
      entry,
    },
  ];
  const roles: KeptRole[] = [];
  const stopAll = async () => {
    // SIGTERM in the reverse of the start order; a role not gone 10 s later is killed.
    await Promise.all([...roles].reverse().map((role) => role.stop()));
  };

  try {
    for (const spec of specs) {
      const role = new KeptRole(spec, { echo, say });
      roles.push(role);
      await role.start();
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  await writeUpState({
    pid: process.pid,
    data_dir: dataDir,
    node_url: nodeUrl,
    supervisor_url: supervisorUrl,
    started_at: new Date().toISOString(),
  });
  const upgrades = new UpgradeControl({
    dataDir,
    roles: new Map(roles.map((role) => [role.name, role])),
    running,
    upgraderEntry: tabbifyEntry,
    upgraderArgs: [
      "--node-data",
      join(dataDir, "node"),
      "--node-listen",
      `${host}:${opts.values["node-port"]}`,
      "--supervisor-url",
      supervisorUrl,
    ],
    upgraderEnv: {
      TABBIFY_NODE_KEY: key,
      TABBIFY_SUPERVISOR_KEY: supKey.key,
      // The node's store, when it is Postgres: the upgrader records the upgrade there.
      ...(nodeEnv.TABBIFY_DATABASE_URL ? { TABBIFY_DATABASE_URL: nodeEnv.TABBIFY_DATABASE_URL } : {}),
    },
    supervisorKey: supKey.key,
    say,
    echo,
  });
  roles.find((role) => role.name === "node")?.onMessage((message) => upgrades.fromNode(message));

  const registryHost = new URL(registryUrl).host;
  const keyExpr = keySource === "TABBIFY_NODE_KEY" ? "$TABBIFY_NODE_KEY" : `$(cat ${keySource})`;
  const supKeyExpr = supKeyFromEnv ? "$SUPERVISOR_API_KEY" : `$(cat ${supKey.source})`;
  process.stdout.write(
    [
      "",
      `Tabbify is up. State lives in ${dataDir}.`,
      `Release ${running.version} runs from ${running.dir}.`,
      "",
      `  node        ${nodeUrl}        deploy API, topology, /app/<uuid> proxy`,
      `  registry    ${registryUrl}        OCI Distribution /v2 (tenant auth on)`,
      `  auth        ${authUrl}        tenant tokens, POST /v1/validate`,
      `  supervisor  ${supervisorUrl}        runs apps on this host (mesh: local${builder ? "; builds images" : ""})`,
      ...(builder
        ? []
        : [
            "  no docker daemon answers, so no image builds (git push deploys) yet: start one",
            "  (`sudo systemctl start docker`, or `sudo dockerd &`) and the supervisor offers builds",
            "  within 30 s, no restart needed.",
          ]),
      "",
      `Node key (Bearer for the node API): ${keyExpr}`,
      `  curl -H "Authorization: Bearer ${keyExpr}" ${nodeUrl}/v1/topology`,
      `Supervisor key (Bearer for the supervisor API; not the node key): ${supKeyExpr}`,
      "",
      "Log in to the registry with a tenant token (tenant = the first path component you may push to):",
      `  TOKEN=$(npx tabbify auth token --tenant dev --data ${join(dataDir, "auth")} | tail -1)`,
      `  docker login ${registryHost} -u x -p "$TOKEN"`,
      `  docker push ${registryHost}/dev/<image>:<tag>`,
      "",
      "Run an example app:",
      `  npx tcli push examples/hello-node --store local --store-dir ${storeDir}`,
      `  curl -X POST -H "Authorization: Bearer ${supKeyExpr}" ${supervisorUrl}/v1/apps/<uuid printed by tcli>/start`,
      `  curl ${nodeUrl}/app/<uuid>/`,
      "",
      "Deploy a GitHub repository with a Dockerfile and a tabbify.toml (needs a Docker daemon):",
      `  curl -X POST -H "Authorization: Bearer ${keyExpr}" ${nodeUrl}/v1/deploy \\`,
      `    -d '{"repo_url":"https://github.com/you/app","ref":"main","tenant":"dev"}'`,
      "",
      "A role that dies is restarted with backoff; the others keep serving.",
      `Upgrade in place: npx tabbify upgrade --to <tarball> --node ${nodeUrl} --key-file ${keySource === "TABBIFY_NODE_KEY" ? "<file>" : keySource}`,
      "Ctrl-C stops the control plane; running apps keep serving and are re-adopted by the next `up`.",
      `To stop everything, apps included: tabbify down --data ${dataDir}`,
      "",
    ].join("\n"),
  );

  const signal = await untilSignal();
  say(`${signal}: stopping every role`);
  await stopAll();
  await clearUpState(dataDir, process.pid);
  say(`apps keep serving; \`tabbify down --data ${dataDir}\` stops them too`);
  return 0;
}
