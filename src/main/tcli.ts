/**
 * `tcli`: the user's CLI. This composition root reads flags and env (commander), builds the
 * artifact store or the node client, hands plain data to the handlers in src/cli and prints what
 * they return. Exit codes: 0 ok, 1 failed, 2 usage.
 */
import { homedir } from "node:os";
import { Command, CommanderError, Option } from "commander";
import { openArtifactStore } from "../artifacts/open.js";
import {
  changeEnv,
  formatEnvChange,
  formatEnvList,
  listEnv,
  parseAssignments,
  parseDotenv,
} from "../cli/app-env.js";
import { formatDeploys, listDeploys, streamDeployLog } from "../cli/app-history.js";
import { formatRegistered, registerPush, registerReleaseCommands } from "../cli/commands-releases.js";
import { savedToken } from "../cli/credentials.js";
import {
  approveDevice,
  awaitDeviceToken,
  denyDevice,
  deviceInstructions,
  startDeviceLogin,
} from "../cli/device-login.js";
import { DockerCli } from "../cli/docker.js";
import { askYes, readHiddenLine, readStdinToken } from "../cli/input.js";
import {
  appStatus,
  assertAllTargets,
  listApps,
  login,
  logout,
  nextStepFor,
  operate,
  parseTail,
  removeApp,
  streamLogs,
} from "../cli/node-commands.js";
import { formatApps, formatLogin, formatOperation, formatRemove, formatStatus } from "../cli/node-output.js";
import { formatPushResult, pushResultJson } from "../cli/output.js";
import { noProgress, TerminalProgress } from "../cli/progress.js";
import { pushApp } from "../cli/push.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { NodeClient, normalizeNodeUrl } from "../node/client.js";
import { artifactStoreConfig, artifactStoreOptions } from "./artifact-store-options.js";
import type { OptionSpec } from "./flags.js";
import { registerContractCommands } from "./tcli-contract.js";

export { DEFAULT_LOCAL_STORE } from "../artifacts/open.js";
export const DEFAULT_NODE_URL = "http://127.0.0.1:8090";

const env = process.env;
const NODE_URL_ENVS = ["TABBIFY_CONTROL_PLANE_URL", "TABBIFY_NODE_URL"] as const;

export const pushOptions: OptionSpec[] = [
  ...artifactStoreOptions,
  {
    flag: "node",
    env: "TABBIFY_CONTROL_PLANE_URL, then TABBIFY_NODE_URL",
    default: DEFAULT_NODE_URL,
    help: "node URL, for the app URL in the summary",
  },
  {
    flag: "dry-run",
    boolean: true,
    help: "print the plan (keys, sizes, docker commands); upload nothing, run nothing",
  },
];

/** Flag over env (non-empty) over default, as every Tabbify role resolves options. */
function resolved(
  flag: string | undefined,
  envNames: readonly string[],
  fallback?: string,
): string | undefined {
  if (flag !== undefined && flag !== "") return flag;
  for (const name of envNames) {
    const v = env[name];
    if (v !== undefined && v !== "") return v;
  }
  return fallback;
}

function nodeUrlOf(opts: { node?: string }): string {
  return normalizeNodeUrl(resolved(opts.node, NODE_URL_ENVS, DEFAULT_NODE_URL) as string);
}

function home(): string {
  return env.HOME && env.HOME !== "" ? env.HOME : homedir();
}

/** A client for the node with the saved token for its URL, else TABBIFY_TOKEN. */
async function clientToken(opts: { node?: string }): Promise<string | undefined> {
  return (await savedToken(home(), nodeUrlOf(opts))) ?? resolved(undefined, ["TABBIFY_TOKEN"]);
}

async function clientFor(opts: { node?: string }): Promise<NodeClient> {
  const url = nodeUrlOf(opts);
  const token = await clientToken(opts);
  return new NodeClient({ url, ...(token ? { token } : {}) });
}

interface CommonOpts {
  node?: string;
  json?: boolean;
  quiet?: boolean;
}

function print<T>(opts: CommonOpts, data: T, text: (d: T) => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else if (!opts.quiet) process.stdout.write(text(data));
}

/** --node, --json and --quiet, which every command takes. */
function withCommon(cmd: Command): Command {
  return cmd
    .option("--node <url>", `node URL (env ${NODE_URL_ENVS.join(", then ")}; default ${DEFAULT_NODE_URL})`)
    .option("--json", "print the result as JSON")
    .option("-q, --quiet", "no progress and no summary on success (errors still print)");
}

function examples(...lines: string[]): string {
  return `\n\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;
}

type StoreFlags = Record<string, string | boolean | undefined>;

/** The artifact store's flags (push writes the store, rm --artifacts deletes from it). */
function addStoreOptions(cmd: Command): Command {
  for (const spec of artifactStoreOptions) {
    const extra = [spec.env ? `env ${spec.env}` : "", spec.default ? `default ${spec.default}` : ""]
      .filter(Boolean)
      .join("; ");
    cmd.addOption(new Option(`--${spec.flag} <value>`, `${spec.help}${extra ? ` (${extra})` : ""}`));
  }
  return cmd;
}

function storeValuesOf(opts: StoreFlags): Record<string, string | undefined> {
  const values: Record<string, string | undefined> = {};
  for (const spec of artifactStoreOptions) {
    const flag = opts[spec.flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())];
    values[spec.flag] = resolved(
      typeof flag === "string" ? flag : undefined,
      spec.env ? [spec.env] : [],
      spec.default,
    );
  }
  return values;
}

const program = new Command("tcli");
program
  .exitOverride()
  .configureOutput({ outputError: () => {} })
  .showSuggestionAfterError(false)
  .helpCommand(false);

const push = withCommon(
  program.command("push").summary("publish a directory with a manifest.toml to the artifact store"),
)
  .usage("<dir> [flags]")
  .argument("[dir...]", "the app directory (holds manifest.toml)");
addStoreOptions(push)
  .option("--dry-run", "print the plan (keys, sizes, docker commands); upload nothing, run nothing")
  .addHelpText(
    "after",
    [
      "",
      "Uploads <dir> as the next version of its app: apps/<uuid>/v<N>/manifest.toml (stamped with",
      "[app].id), the directory's files (.gitignore/.tabbifyignore honoured; only the entry for wasm",
      'apps), image.tar.gz for [build] kind = "docker", then apps/<uuid>/latest = N. The app id',
      "comes from [app].id, else tabbify.lock, else a new UUID v7 recorded in tabbify.lock.",
      "S3 credentials come from the AWS default chain (AWS_ACCESS_KEY_ID/…, AWS_PROFILE, roles).",
    ].join("\n") +
      examples(
        "tcli push examples/hello-node",
        "tcli push . --dry-run",
        "tcli push . --store s3 --bucket tabbify-artifacts --endpoint http://127.0.0.1:9000",
      ),
  )
  .action(async (dirs: string[], opts: CommonOpts & Record<string, string | boolean | undefined>) => {
    if (dirs.length !== 1) {
      throw new TabbifyError("USAGE", "tcli push takes exactly one directory: tcli push <dir>");
    }
    const dryRun = opts.dryRun === true;
    // With a token for the node (logged in, or TABBIFY_TOKEN), the node records the version as a release.
    // No readable token (or a --node given only for the summary's URL) means upload only, as before.
    const client = dryRun ? undefined : await clientFor(opts as CommonOpts).catch(() => undefined);
    const opened = await openArtifactStore(artifactStoreConfig(storeValuesOf(opts)));
    try {
      const result = await pushApp({
        dir: dirs[0]!,
        store: opened.store,
        storeName: opened.name,
        nodeUrl: resolved(opts.node as string | undefined, NODE_URL_ENVS, DEFAULT_NODE_URL) as string,
        dryRun,
        skipDirs: opened.localRoot ? [opened.localRoot] : [],
        docker: new DockerCli(env),
        progress:
          process.stderr.isTTY && !dryRun && !opts.quiet ? new TerminalProgress(process.stderr) : noProgress,
        ...(opened.stagingDir ? { stagingDir: opened.stagingDir } : {}),
      });
      if (client?.hasToken()) result.release = await registerPush(client, result);
      process.stdout.write(
        opts.json
          ? pushResultJson(result)
          : `${formatPushResult(result)}${result.release && client ? formatRegistered(result.release, client.url) : ""}`,
      );
    } finally {
      opened.close();
    }
  });

withCommon(
  program.command("login").summary("log in to a node: a token, or device login; approve or deny a device"),
)
  .usage("[approve|deny <user_code>] [flags]")
  .argument("[action]", "approve or deny: answer another terminal's device login")
  .argument("[user_code]", "the code the waiting terminal shows (XXXX-XXXX)")
  .option("--token-stdin", "read the token from stdin (for CI) instead of prompting")
  .option("--device", "device login (RFC 8628) without prompting: wait for someone to approve the code")
  .option("--tenant <name>", "approve: the tenant the device gets a token for (needed with the node key)")
  .option("--subject <name>", "approve: who the device's token is for (default: yours, or device-login)")
  .addHelpText(
    "after",
    "\nThe token is the node key (admin) or a tenant token from `tabbify auth token`. It is checked\n" +
      "against the node first, then saved in ~/.tabbify/credentials (0600), one entry per node URL.\n" +
      "It is never taken as an argument: argv is visible to every user of the machine.\n" +
      "An empty token at the prompt (or --device) starts device login: tcli shows a code, and someone\n" +
      "logged in approves it with `tcli login approve CODE`; this terminal then gets a tenant token." +
      examples(
        "tcli login --node http://127.0.0.1:8090",
        "printf '%s\\n' \"$TABBIFY_NODE_KEY\" | tcli login --token-stdin",
        "tcli login --device --node https://tabbify.example",
        "tcli login approve BCDF-GHJK --tenant dev",
        "tcli login deny BCDF-GHJK",
      ),
  )
  .action(async (action: string | undefined, userCode: string | undefined, opts: LoginOpts) => {
    if (action !== undefined) return answerDevice(action, userCode, opts);
    const url = nodeUrlOf(opts);
    let token = "";
    if (opts.tokenStdin) {
      token = await readStdinToken(process.stdin);
      if (token === "")
        throw new TabbifyError("USAGE", "stdin held no token: pipe one, or use --device for device login");
    } else if (!opts.device) {
      if (!process.stdin.isTTY) {
        throw new TabbifyError(
          "USAGE",
          "stdin is not a terminal, so there is nothing to prompt on: pipe the token with --token-stdin, or use --device",
        );
      }
      token = await readHiddenLine(`token for ${url} (empty: device login): `, process.stdin, process.stderr);
    }
    if (token === "") {
      const anonymous = new NodeClient({ url });
      const grant = await startDeviceLogin(anonymous);
      process.stderr.write(deviceInstructions(grant, url));
      token = await awaitDeviceToken(anonymous, grant, {
        onSlowDown: (s) => process.stderr.write(`the node asked to poll slower: every ${s} s\n`),
      });
    }
    print(opts, await login(new NodeClient({ url, token }), token, home()), formatLogin);
  });

interface LoginOpts extends CommonOpts {
  tokenStdin?: boolean;
  device?: boolean;
  tenant?: string;
  subject?: string;
}

async function answerDevice(action: string, userCode: string | undefined, opts: LoginOpts): Promise<void> {
  if (action !== "approve" && action !== "deny") {
    throw new TabbifyError(
      "USAGE",
      `tcli login takes approve or deny before a code, not "${action.slice(0, 20)}"`,
    );
  }
  if (!userCode)
    throw new TabbifyError("USAGE", `tcli login ${action} needs the code: tcli login ${action} XXXX-XXXX`);
  const client = await clientFor(opts);
  if (action === "deny") {
    print(opts, await denyDevice(client, userCode), () => `refused the device login ${userCode}\n`);
    return;
  }
  const asked: { tenant?: string; subject?: string } = {};
  if (opts.tenant) asked.tenant = opts.tenant;
  if (opts.subject) asked.subject = opts.subject;
  print(
    opts,
    await approveDevice(client, userCode, asked),
    (r) =>
      `approved ${userCode}: the device gets a token for tenant ${r.tenant} (subject ${r.subject}, ${Math.round(r.token_ttl_secs / 3600)} h)\n`,
  );
}

withCommon(program.command("logout").summary("forget the saved token for a node"))
  .addHelpText("after", examples("tcli logout", "tcli logout --node https://tabbify.example"))
  .action(async (opts: CommonOpts) => {
    print(opts, await logout(nodeUrlOf(opts), home()), (r) =>
      r.forgotten ? `logged out of ${r.node}\n` : `no saved token for ${r.node}\n`,
    );
  });

withCommon(
  program.command("apps").summary("list the apps you may see: name, uuid, envs, state, version, URL"),
)
  .addHelpText("after", examples("tcli apps", "tcli apps --json | jq -r '.[].name'"))
  .action(async (opts: CommonOpts) => {
    print(opts, await listApps(await clientFor(opts)), formatApps);
  });

withCommon(program.command("status").summary("an app's targets, state and last deploy"))
  .argument("<app>", "app name or uuid")
  .addHelpText("after", examples("tcli status hello-node", "tcli status 0190f3c2-…-… --json"))
  .action(async (ref: string, opts: CommonOpts) => {
    print(opts, await appStatus(await clientFor(opts), ref), formatStatus);
  });

withCommon(program.command("logs").summary("an app's runtime output, merged across its targets"))
  .argument("<app>", "app name or uuid")
  .option("-f, --follow", "keep streaming what the app writes (Ctrl-C stops)")
  .option("--tail <n>", "lines from the end of each target's log (up to 10000)", "100")
  .option("--deploy [id]", "a deploy's build and rollout log instead (default: the newest deploy)")
  .addHelpText(
    "after",
    "\nEach line is prefixed with its target (the supervisor's name). The supervisors read their\n" +
      "runner log and its rotated .log.1 from the end; nothing is read whole." +
      examples(
        "tcli logs hello-node",
        "tcli logs hello-node -f --tail 20",
        "tcli logs hello-node --json | jq -r .line",
        "tcli logs hello-node --deploy",
        "tcli logs hello-node --deploy 0193a1b2-…",
      ),
  )
  .action(
    async (ref: string, opts: CommonOpts & { follow?: boolean; tail: string; deploy?: string | true }) => {
      const tail = parseTail(opts.tail);
      const client = await clientFor(opts);
      if (opts.deploy !== undefined) {
        const id = opts.deploy === true ? "latest" : opts.deploy;
        return streamDeployLog(client, ref, id, (t) => process.stdout.write(t));
      }
      await streamLogs(client, ref, { tail, follow: opts.follow === true, json: opts.json === true }, (t) =>
        process.stdout.write(t),
      );
    },
  );

const opSummaries = {
  stop: "stop an app on every target (it stays registered)",
  start: "start a stopped app again on its targets",
  restart: "zero-downtime restart on every target: a swap to the release it runs",
} as const;
for (const op of ["stop", "start", "restart"] as const) {
  withCommon(program.command(op).summary(opSummaries[op]))
    .argument("<app>", "app name or uuid")
    .addHelpText("after", examples(`tcli ${op} hello-node`, `tcli ${op} hello-node --json`))
    .action(async (ref: string, opts: CommonOpts) => {
      const result = await operate(await clientFor(opts), ref, op);
      print(opts, result, formatOperation);
      assertAllTargets(result);
    });
}

addStoreOptions(
  withCommon(program.command("rm").summary("purge an app on every target and remove it from the registry"))
    .argument("<app>", "app name or uuid")
    .option("-y, --yes", "do not ask (needed when stdin is not a terminal)")
    .option("--artifacts", "also delete the app's versions from the artifact store (--store… as for push)"),
)
  .addHelpText(
    "after",
    "\nThe app's versions stay in the artifact store unless --artifacts is given; that deletes\n" +
      "apps/<uuid>/ from the store push wrote to (same --store/--store-dir/--bucket flags and env)." +
      examples("tcli rm hello-node", "tcli rm hello-node --yes", "tcli rm hello-node --yes --artifacts"),
  )
  .action(async (ref: string, opts: CommonOpts & { yes?: boolean; artifacts?: boolean } & StoreFlags) => {
    if (!opts.yes) {
      if (!process.stdin.isTTY)
        throw new TabbifyError("USAGE", `not a terminal, so not asking: pass --yes to remove ${ref}`);
      if (
        !(await askYes(
          `remove ${ref} from every target and the registry? [y/N] `,
          process.stdin,
          process.stderr,
        ))
      ) {
        throw new TabbifyError("CANCELLED", "nothing was removed");
      }
    }
    const removed = await removeApp(await clientFor(opts), ref);
    if (opts.artifacts) {
      const opened = await openArtifactStore(artifactStoreConfig(storeValuesOf(opts)));
      try {
        removed.artifacts = {
          store: opened.name,
          versions: await opened.store.deleteApp(removed.purge.uuid),
        };
      } finally {
        opened.close();
      }
    }
    print(opts, removed, formatRemove);
  });

withCommon(program.command("env").summary("an app's env vars and secrets: set, unset, list"))
  .usage("set|unset|list <app> [KEY=VALUE…|KEY…] [flags]")
  .argument("<action>", "set, unset or list")
  .argument("<app>", "app name or uuid")
  .argument("[words...]", "set: KEY=VALUE…; unset: KEY…")
  .option("--env <name>", "the app's environment (default: its first)")
  .option("--from-stdin", "set: read KEY=VALUE lines (dotenv) from stdin: values stay out of argv and ps")
  .option("--no-restart", "do not restart the app onto the new env (it applies at the next start)")
  .option("--reveal", "list: show values too (node key only)")
  .addHelpText(
    "after",
    "\nValues are stored encrypted on the node and reach only the app's workloads. KEY=VALUE on the\n" +
      "command line is visible to every user in ps: pass secrets with --from-stdin. A change restarts\n" +
      "the app onto the same release with the new env (zero downtime) unless --no-restart." +
      examples(
        "tcli env set hello-node LOG_LEVEL=debug",
        "printf 'DATABASE_URL=%s\\n' \"$DB\" | tcli env set hello-node --from-stdin",
        "tcli env unset hello-node LOG_LEVEL",
        "tcli env list hello-node --env prod",
        "tcli env list hello-node --reveal --json",
      ),
  )
  .action(async (action: string, ref: string, words: string[], opts: EnvOpts) => {
    const client = await clientFor(opts);
    if (action === "list") {
      if (words.length > 0) throw new TabbifyError("USAGE", "tcli env list takes only the app");
      print(opts, await listEnv(client, ref, opts.env, opts.reveal === true), formatEnvList);
      return;
    }
    if (action !== "set" && action !== "unset")
      throw new TabbifyError("USAGE", `tcli env takes set, unset or list, not "${action.slice(0, 20)}"`);
    const change: { env?: string; set?: Record<string, string>; unset?: string[]; restart: boolean } = {
      restart: opts.restart !== false,
    };
    if (opts.env) change.env = opts.env;
    if (action === "set") {
      change.set = opts.fromStdin ? parseDotenv(await readAll(process.stdin)) : parseAssignments(words);
      if (opts.fromStdin && words.length > 0)
        throw new TabbifyError("USAGE", "--from-stdin takes the values from stdin only, not as arguments");
      if (Object.keys(change.set).length === 0) throw new TabbifyError("USAGE", "nothing to set: KEY=VALUE…");
    } else {
      if (words.length === 0) throw new TabbifyError("USAGE", "nothing to unset: tcli env unset <app> KEY…");
      change.unset = words;
    }
    const result = await changeEnv(client, ref, change);
    print(opts, result, formatEnvChange);
    if (result.restart)
      assertAllTargets({
        ...result.restart,
        targets: result.restart.targets.filter((t) => t.status !== 409),
      });
  });

interface EnvOpts extends CommonOpts {
  env?: string;
  fromStdin?: boolean;
  restart?: boolean;
  reveal?: boolean;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

withCommon(program.command("deploys").summary("recent deploys of an app, or of every app you may see"))
  .argument("[app]", "app name or uuid (default: every app)")
  .option("--limit <n>", "how many (1-200)", "20")
  .addHelpText("after", examples("tcli deploys", "tcli deploys hello-node --limit 5", "tcli deploys --json"))
  .action(async (ref: string | undefined, opts: CommonOpts & { limit: string }) => {
    if (!/^\d{1,3}$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 200)
      throw new TabbifyError(
        "USAGE",
        `--limit takes a whole number from 1 to 200, not "${opts.limit.slice(0, 20)}"`,
      );
    print(opts, await listDeploys(await clientFor(opts), ref, Number(opts.limit)), formatDeploys);
  });

registerReleaseCommands(program, { withCommon, clientFor, print, examples });
registerContractCommands(program, {
  withCommon,
  connect: async (o) => ({ url: nodeUrlOf(o), token: await clientToken(o) }),
});

const commands = program.commands;
program.helpInformation = () => {
  const width = Math.max(...commands.map((c) => c.name().length));
  const lines = commands.map((c) => `  ${c.name().padEnd(width)}  ${c.summary()}`);
  return `usage: tcli <command> [flags]\n\ncommands:\n${lines.join("\n")}\n\n\`tcli <command> --help\` lists a command's flags, env vars and examples.\n`;
};
for (const c of commands) c.helpOption("-h, --help", "show this help");

function commandName(): string {
  const name = process.argv[2];
  return name && commands.some((c) => c.name() === name) ? name : "";
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.length === 0) {
    process.stdout.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(process.argv);
    return 0;
  } catch (err) {
    const command = commandName();
    const label = command ? `tcli ${command}` : "tcli";
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.help" ||
        err.code === "commander.version"
      ) {
        return 0;
      }
      if (err.code === "commander.unknownOption") {
        const flag = /'([^']+)'/.exec(err.message)?.[1] ?? "?";
        process.stderr.write(`${label}: unknown option ${flag} (see ${label} --help)\n`);
        return 2;
      }
      if (err.code === "commander.unknownCommand") {
        const name = /'([^']+)'/.exec(err.message)?.[1] ?? argv[0];
        process.stderr.write(`tcli: unknown command "${name}"\n\n${program.helpInformation()}`);
        return 2;
      }
      process.stderr.write(`${label}: ${err.message.replace(/^error: /, "")} (see ${label} --help)\n`);
      return 2;
    }
    if (isTabbifyError(err)) {
      const next = nextStepFor(err.code, command, safeNodeUrl());
      process.stderr.write(
        `${label}: ${err.message}\n${next && err.code !== "USAGE" ? `  next: ${next}\n` : ""}`,
      );
      return err.code === "USAGE" ? 2 : 1;
    }
    process.stderr.write(`${label}: unexpected error (a bug): ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

/** The node URL the failed command used, for the next-step hint; undefined if it was malformed. */
function safeNodeUrl(): string | undefined {
  const i = process.argv.indexOf("--node");
  try {
    return nodeUrlOf({ node: i > 0 ? process.argv[i + 1] : undefined });
  } catch {
    return undefined;
  }
}

process.exitCode = await main();
