/**
 * `tcli`: the user's CLI. This composition root builds the commander program from the command
 * files in ./tcli/ (which read flags and env, build the artifact store or the node client, and
 * hand plain data to the handlers in src/cli), then maps errors to exit codes: 0 ok, 1 failed,
 * 2 usage.
 */
import { Command, CommanderError } from "commander";
import { registerReleaseCommands } from "../cli/commands-releases.js";
import { nextStepFor } from "../cli/node-commands.js";
import { isTabbifyError } from "../core/errors.js";
import { registerAppCommands } from "./tcli/apps.js";
import { registerEnvCommand } from "./tcli/env.js";
import { clientFor, clientToken, examples, nodeUrlOf, print, withCommon } from "./tcli/kit.js";
import { registerLoginCommands } from "./tcli/login.js";
import { registerPushCommand } from "./tcli/push.js";
import { registerContractCommands } from "./tcli-contract.js";

export { DEFAULT_LOCAL_STORE } from "../artifacts/open.js";
export { DEFAULT_NODE_URL } from "./tcli/kit.js";

const program = new Command("tcli");
program
  .exitOverride()
  .configureOutput({ outputError: () => {} })
  .showSuggestionAfterError(false)
  .helpCommand(false);

registerPushCommand(program);
registerLoginCommands(program);
registerAppCommands(program);
registerEnvCommand(program);
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
    // A command that printed its whole answer may still have failed (a push whose start failed).
    return typeof process.exitCode === "number" ? process.exitCode : 0;
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
