import { join } from "node:path";
import type { Command } from "commander";
import {
  formatGrants,
  formatPlan,
  proofsDiff,
  proofsExport,
  proofsList,
  proofsShow,
} from "../cli/proofs-commands.js";
import { LEDGER_FILE } from "../contract/ledger.js";
import { TabbifyError } from "../core/errors.js";
import { NodeClient } from "../node/client.js";
import { approvePlan, grants, plan, rejectPlan, revokeGrant } from "../node/review-client.js";

/**
 * tcli's handler-deploy commands: deploy, review, grants, revoke-grant and proofs. tcli.ts hands
 * in its `--node/--json/--quiet` options and how it finds the node URL and token.
 */

interface CommonOpts {
  node?: string;
  json?: boolean;
  quiet?: boolean;
}

export interface ContractCommandDeps {
  withCommon: (cmd: Command) => Command;
  /** The node URL and the saved token for it (else TABBIFY_TOKEN). */
  connect: (opts: CommonOpts) => Promise<{ url: string; token: string | undefined }>;
}

function examples(...lines: string[]): string {
  return `\n\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;
}

function write(opts: CommonOpts, data: unknown, text: string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else if (!opts.quiet) process.stdout.write(text);
}

export function registerContractCommands(program: Command, deps: ContractCommandDeps): void {
  deps
    .withCommon(
      program
        .command("deploy")
        .summary("deploy a fetch handler with its contract (or --local: one executable)"),
    )
    .argument("[dir]", "the directory holding handler.ts|tsx|jsx|js (or src/handler.*)", ".")
    .option("--region <name>", "a supervisor name or tag (default: the previous deploy's, else default)")
    .option("--confirm", "proceed despite drift, rebinding the service (the old one is never deleted)")
    .option("--no-wait", "return once the deploy is accepted")
    .option("--wait-timeout <secs>", "how long to wait for ready", "120")
    .option("--local", "build .tabbify/deploy/<service>, a self-contained executable; no network")
    .addHelpText(
      "after",
      [
        "",
        "Derives the handler's contract (env names, egress hosts, routes, cache namespaces, properties),",
        "sends it to the node before any upload (risky additions stop for review: tcli review), uploads",
        "the bundle with a credential minted for this deploy alone, waits for ready, appends the proof",
        "row to .tabbify/proofs.jsonl and prints the review card. Runtime env: KEY=value lines of .env.",
        "Exit codes: 0 ok, 1 failed or review required, 2 drift (re-run with --confirm),",
        "3 not ready within --wait-timeout, 4 the service failed to start.",
      ].join("\n") +
        examples(
          "tcli deploy examples/hello-handler",
          "tcli deploy --region local --confirm",
          "tcli deploy --local && PORT=8080 ./.tabbify/deploy/hello-handler",
        ),
    )
    .action(
      async (
        dir: string,
        opts: CommonOpts & {
          region?: string;
          confirm?: boolean;
          wait: boolean;
          waitTimeout: string;
          local?: boolean;
        },
      ) => {
        // The analyser (typescript) and esbuild load only for deploy: every other command stays fast.
        if (opts.local) {
          const { deployLocal } = await import("../cli/deploy-local.js");
          const r = await deployLocal(dir);
          write(
            opts,
            { binary: r.binary, service: r.service, contractSha: r.contractSha, bytes: r.bytes },
            `${r.card}built: ${r.binary} (${Math.round(r.bytes / 1e6)} MB); run it with PORT=8080 ${r.binary}\n`,
          );
          return;
        }
        const secs = Number(opts.waitTimeout);
        if (!Number.isFinite(secs) || secs <= 0)
          throw new TabbifyError("USAGE", "--wait-timeout takes a number of seconds > 0");
        const { url, token } = await deps.connect(opts);
        const text: string[] = [];
        const { deployHandler } = await import("../cli/deploy.js");
        const outcome = await deployHandler({
          dir,
          nodeUrl: url,
          token,
          ...(opts.region ? { region: opts.region } : {}),
          confirm: opts.confirm === true,
          wait: opts.wait,
          waitTimeoutMs: secs * 1000,
          out: (t) => {
            if (opts.json) text.push(t);
            else if (!opts.quiet) process.stdout.write(t);
          },
        });
        if (opts.json)
          process.stdout.write(`${JSON.stringify({ ...outcome, output: text.join("") }, null, 2)}\n`);
        if (outcome.exitCode !== 0) process.exit(outcome.exitCode);
      },
    );

  deps
    .withCommon(
      program.command("review").summary("show, approve (once or as a grant) or reject a deploy review plan"),
    )
    .argument("<plan-id>", "the plan id tcli deploy printed")
    .option("--approve", "approve this plan")
    .option("--grant", "with --approve: also approve these reasons for the project's later deploys")
    .option("--reject", "reject this plan")
    .addHelpText(
      "after",
      examples("tcli review 0f6c…", "tcli review 0f6c… --approve --grant", "tcli review 0f6c… --reject"),
    )
    .action(
      async (id: string, opts: CommonOpts & { approve?: boolean; grant?: boolean; reject?: boolean }) => {
        if (opts.approve && opts.reject)
          throw new TabbifyError("USAGE", "--approve and --reject exclude each other");
        if (opts.grant && !opts.approve) throw new TabbifyError("USAGE", "--grant goes with --approve");
        const { url, token } = await deps.connect(opts);
        const client = new NodeClient({ url, ...(token ? { token } : {}) });
        const shown = opts.approve
          ? await approvePlan(client, id, opts.grant ? "grant" : "once")
          : opts.reject
            ? await rejectPlan(client, id)
            : await plan(client, id);
        write(opts, shown, formatPlan(shown));
      },
    );

  deps
    .withCommon(program.command("grants").summary("list review grants (all, or one project's)"))
    .argument("[project]", "a project (service) name")
    .action(async (project: string | undefined, opts: CommonOpts) => {
      const { url, token } = await deps.connect(opts);
      const listed = await grants(new NodeClient({ url, ...(token ? { token } : {}) }), project);
      write(opts, { grants: listed }, formatGrants(listed));
    });

  deps
    .withCommon(program.command("revoke-grant").summary("revoke a review grant"))
    .argument("<grant-id>", "the grant's id (tcli grants)")
    .action(async (id: string, opts: CommonOpts) => {
      const { url, token } = await deps.connect(opts);
      const grant = await revokeGrant(new NodeClient({ url, ...(token ? { token } : {}) }), id);
      write(opts, { grant }, `revoked grant ${grant.id} (${grant.projectName})\n`);
    });

  const proofs = program
    .command("proofs")
    .summary("the proof ledger (.tabbify/proofs.jsonl): list, show, diff, export")
    .option("--dir <dir>", "the project directory holding .tabbify/", ".");
  const ledgerOf = () => join((proofs.opts() as { dir: string }).dir, LEDGER_FILE);
  proofs
    .command("list")
    .summary("recent rows: time, kind, sha, verdict, routes/env/hosts/cache/capabilities")
    .option("-n, --limit <n>", "rows", "20")
    .action(async (o: { limit: string }) => {
      process.stdout.write(await proofsList(ledgerOf(), Math.max(1, Number(o.limit) || 20)));
    });
  proofs
    .command("show")
    .summary("the review card of a row")
    .argument("[ref]", "HEAD, HEAD~N or a contract sha prefix", "HEAD")
    .action(async (ref: string) => {
      process.stdout.write(await proofsShow(ledgerOf(), ref));
    });
  proofs
    .command("diff")
    .summary("what changed between two rows")
    .argument("<a>", "the older ref")
    .argument("<b>", "the newer ref")
    .action(async (a: string, b: string) => {
      process.stdout.write(await proofsDiff(ledgerOf(), a, b));
    });
  proofs
    .command("export")
    .summary("a receipt (md) or a verdict badge (svg)")
    .requiredOption("--format <md|svg>", "md or svg")
    .option("--ref <ref>", "HEAD, HEAD~N or a contract sha prefix", "HEAD")
    .action(async (o: { format: string; ref: string }) => {
      process.stdout.write(await proofsExport(ledgerOf(), o.format, o.ref));
    });
}
