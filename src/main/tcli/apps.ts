import type { Command } from "commander";
import { openArtifactStore } from "../../artifacts/open.js";
import { formatDeploys, listDeploys, streamDeployLog } from "../../cli/app-history.js";
import { askYes } from "../../cli/input.js";
import {
  appStatus,
  assertAllTargets,
  listApps,
  operate,
  parseSinceOption,
  parseTail,
  removeApp,
  streamLogs,
} from "../../cli/node-commands.js";
import { formatApps, formatOperation, formatRemove, formatStatus } from "../../cli/node-output.js";
import { TabbifyError } from "../../core/errors.js";
import { artifactStoreConfig } from "../artifact-store-options.js";
import {
  addStoreOptions,
  type CommonOpts,
  clientFor,
  examples,
  print,
  type StoreFlags,
  storeValuesOf,
  withCommon,
} from "./kit.js";

/** `tcli apps`, `status`, `logs`, `stop|start|restart`, `rm` and `deploys`: an app's day to day. */
export function registerAppCommands(program: Command): void {
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

  registerLogsCommand(program);

  const opSummaries = {
    stop: "stop an app on every target (it stays registered)",
    start: "start a stopped app again on its targets",
    restart: "zero-downtime restart on every target: a swap to the release it runs",
  } as const;
  for (const op of ["stop", "start", "restart"] as const) {
    withCommon(program.command(op).summary(opSummaries[op]))
      .argument("<app>", "app name or uuid")
      .option(
        "--env <name>",
        "one of the app's environments (default: prod, or its first when it has no prod)",
      )
      .addHelpText(
        "after",
        examples(
          `tcli ${op} hello-node`,
          `tcli ${op} hello-node --env staging`,
          `tcli ${op} hello-node --json`,
        ),
      )
      .action(async (ref: string, opts: CommonOpts & { env?: string }) => {
        const result = await operate(await clientFor(opts), ref, op, opts.env);
        print(opts, result, formatOperation);
        assertAllTargets(result);
      });
  }

  registerRemoveCommand(program);

  withCommon(program.command("deploys").summary("recent deploys of an app, or of every app you may see"))
    .argument("[app]", "app name or uuid (default: every app)")
    .option("--limit <n>", "how many (1-200)", "20")
    .addHelpText(
      "after",
      examples("tcli deploys", "tcli deploys hello-node --limit 5", "tcli deploys --json"),
    )
    .action(async (ref: string | undefined, opts: CommonOpts & { limit: string }) => {
      if (!/^\d{1,3}$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 200)
        throw new TabbifyError(
          "USAGE",
          `--limit takes a whole number from 1 to 200, not "${opts.limit.slice(0, 20)}"`,
        );
      print(opts, await listDeploys(await clientFor(opts), ref, Number(opts.limit)), formatDeploys);
    });
}

function registerLogsCommand(program: Command): void {
  withCommon(program.command("logs").summary("an app's runtime output, merged across its targets"))
    .argument("<app>", "app name or uuid")
    .option("-f, --follow", "keep streaming what the app writes (Ctrl-C stops)")
    .option(
      "--tail <n>",
      "lines from the end of each target's log (up to 10000; default 100, or all since --since)",
    )
    .option(
      "--since <when>",
      "only lines since then: 90s, 10m, 2h, 7d back from now, or a time (2026-12-06T06:00:00Z)",
    )
    .option("-t, --timestamps", "show when the runner received each line (RFC 3339, UTC)")
    .option("--env <name>", "one of the app's environments (default: prod, or its first when it has no prod)")
    .option("--deploy [id]", "a deploy's build and rollout log instead (default: the newest deploy)")
    .addHelpText(
      "after",
      "\nEach line is prefixed with its target (the supervisor's name). The supervisors read their\n" +
        "runner log and its rotated .log.1 from the end; nothing is read whole. Every line is stamped\n" +
        "with the time its runner received it, which --since filters on and --timestamps shows." +
        examples(
          "tcli logs hello-node",
          "tcli logs hello-node -f --tail 20",
          "tcli logs hello-node --since 10m -f",
          "tcli logs hello-node --since 2026-12-06T06:00:00Z --timestamps",
          "tcli logs hello-node --env staging",
          "tcli logs hello-node --json | jq -r .line",
          "tcli logs hello-node --deploy",
          "tcli logs hello-node --deploy 0193a1b2-…",
        ),
    )
    .action(
      async (
        ref: string,
        opts: CommonOpts & {
          follow?: boolean;
          tail?: string;
          env?: string;
          deploy?: string | true;
          since?: string;
          timestamps?: boolean;
        },
      ) => {
        const tail = opts.tail === undefined ? undefined : parseTail(opts.tail);
        if (opts.since !== undefined) parseSinceOption(opts.since);
        const client = await clientFor(opts);
        if (opts.deploy !== undefined) {
          const id = opts.deploy === true ? "latest" : opts.deploy;
          return streamDeployLog(client, ref, id, (t) => process.stdout.write(t));
        }
        await streamLogs(
          client,
          ref,
          {
            follow: opts.follow === true,
            json: opts.json === true,
            ...(tail !== undefined ? { tail } : {}),
            ...(opts.env ? { env: opts.env } : {}),
            ...(opts.since !== undefined ? { since: opts.since } : {}),
            ...(opts.timestamps ? { timestamps: true } : {}),
          },
          (t) => process.stdout.write(t),
        );
      },
    );
}

function registerRemoveCommand(program: Command): void {
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
}
