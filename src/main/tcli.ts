/**
 * `tcli`: the user's CLI. This composition root reads flags and env, builds the artifact store
 * and hands plain data to the handlers in src/cli, then prints what they return.
 */
import { openArtifactStore } from "../artifacts/open.js";
import { DockerCli } from "../cli/docker.js";
import { formatPushResult, pushResultJson } from "../cli/output.js";
import { noProgress, TerminalProgress } from "../cli/progress.js";
import { pushApp } from "../cli/push.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { artifactStoreConfig, artifactStoreOptions } from "./artifact-store-options.js";
import { type OptionSpec, optionsHelp, parseOptions } from "./flags.js";

export { DEFAULT_LOCAL_STORE } from "../artifacts/open.js";
export const DEFAULT_NODE_URL = "http://127.0.0.1:8090";

export const pushOptions: OptionSpec[] = [
  ...artifactStoreOptions,
  {
    flag: "node",
    env: "TABBIFY_NODE_URL",
    default: DEFAULT_NODE_URL,
    help: "node URL, for the app URL in the summary",
  },
  {
    flag: "dry-run",
    boolean: true,
    help: "print the plan (keys, sizes, docker commands); upload nothing, run nothing",
  },
  { flag: "json", boolean: true, help: "print the result as JSON" },
];

const commands: Record<
  string,
  { summary: string; run: (argv: string[], env: NodeJS.ProcessEnv) => Promise<number> }
> = {
  push: { summary: "publish a directory with a manifest.toml to the artifact store", run: runPush },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: tcli <command> [flags]\n\ncommands:\n${lines.join("\n")}\n\n\`tcli <command> --help\` lists a command's flags and env vars.\n`;
}

function pushHelp(): string {
  const about = [
    "",
    "Uploads <dir> as the next version of its app: apps/<uuid>/v<N>/manifest.toml (stamped with",
    "[app].id), the directory's files (.gitignore/.tabbifyignore honoured; only the entry for wasm",
    'apps), image.tar.gz for [build] kind = "docker", then apps/<uuid>/latest = N. The app id',
    "comes from [app].id, else tabbify.lock, else a new UUID v7 recorded in tabbify.lock.",
    "S3 credentials come from the AWS default chain (AWS_ACCESS_KEY_ID/…, AWS_PROFILE, roles).",
    "",
  ].join("\n");
  return optionsHelp("tcli push <dir> [flags]", pushOptions) + about;
}

async function runPush(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, pushOptions, { allowPositionals: true });
  if (opts.help) {
    process.stdout.write(pushHelp());
    return 0;
  }
  if (opts.positionals.length !== 1) {
    throw new TabbifyError("USAGE", "tcli push takes exactly one directory: tcli push <dir>");
  }
  const v = opts.values;
  const opened = await openArtifactStore(artifactStoreConfig(v));
  const dryRun = opts.flags["dry-run"] === true;
  try {
    const result = await pushApp({
      dir: opts.positionals[0]!,
      store: opened.store,
      storeName: opened.name,
      nodeUrl: v.node!,
      dryRun,
      skipDirs: opened.localRoot ? [opened.localRoot] : [],
      docker: new DockerCli(env),
      progress: process.stderr.isTTY && !dryRun ? new TerminalProgress(process.stderr) : noProgress,
      ...(opened.stagingDir ? { stagingDir: opened.stagingDir } : {}),
    });
    process.stdout.write(opts.flags.json ? pushResultJson(result) : formatPushResult(result));
    return 0;
  } finally {
    opened.close();
  }
}

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(usage());
    return command ? 0 : 2;
  }
  const entry = commands[command];
  if (!entry) {
    process.stderr.write(`tcli: unknown command "${command}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await entry.run(rest, process.env);
  } catch (err) {
    if (isTabbifyError(err)) {
      process.stderr.write(`tcli ${command}: ${err.message}\n`);
      return err.code === "USAGE" ? 2 : 1;
    }
    process.stderr.write(
      `tcli ${command}: unexpected error (a bug): ${(err as Error)?.stack ?? String(err)}\n`,
    );
    return 1;
  }
}

process.exitCode = await main();
