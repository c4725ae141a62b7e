import type { Command } from "commander";
import {
  changeEnv,
  formatEnvChange,
  formatEnvList,
  listEnv,
  parseAssignments,
  parseDotenv,
} from "../../cli/app-env.js";
import { assertAllTargets } from "../../cli/node-commands.js";
import { TabbifyError } from "../../core/errors.js";
import { type CommonOpts, clientFor, examples, print, readAll, withCommon } from "./kit.js";

/** `tcli env set|unset|list <app>`: an app's env vars and secrets, per environment. */

interface EnvOpts extends CommonOpts {
  env?: string;
  fromStdin?: boolean;
  restart?: boolean;
  reveal?: boolean;
}

export function registerEnvCommand(program: Command): void {
  withCommon(program.command("env").summary("an app's env vars and secrets: set, unset, list"))
    .usage("set|unset|list <app> [KEY=VALUE…|KEY…] [flags]")
    .argument("<action>", "set, unset or list")
    .argument("<app>", "app name or uuid")
    .argument("[words...]", "set: KEY=VALUE…; unset: KEY…")
    .option("--env <name>", "the app's environment (default: prod, or its first when it has no prod)")
    .option("--from-stdin", "set: read KEY=VALUE lines (dotenv) from stdin: values stay out of argv and ps")
    .option("--no-restart", "do not restart the app onto the new env (it applies at the next start)")
    .option("--reveal", "list: show values too (node key only)")
    .addHelpText(
      "after",
      "\nValues are stored encrypted on the node and reach only the workloads of their environment\n" +
        "(without --env: prod's, or the first environment's when there is no prod). KEY=VALUE on the\n" +
        "command line is visible to every user in ps: pass secrets with --from-stdin. A change restarts\n" +
        "that environment's workloads onto the same release with the new env (zero downtime) unless\n" +
        "--no-restart." +
        examples(
          "tcli env set hello-node LOG_LEVEL=debug",
          "printf 'DATABASE_URL=%s\\n' \"$DB\" | tcli env set hello-node --from-stdin",
          "tcli env set hello-node --env staging LOG_LEVEL=debug",
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
        if (Object.keys(change.set).length === 0)
          throw new TabbifyError("USAGE", "nothing to set: KEY=VALUE…");
      } else {
        if (words.length === 0)
          throw new TabbifyError("USAGE", "nothing to unset: tcli env unset <app> KEY…");
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
}
