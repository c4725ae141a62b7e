import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { Command } from "commander";
import { TabbifyError } from "../core/errors.js";
import type { NodeClient } from "../node/client.js";
import {
  listReleases,
  type NodeRelease,
  type PushedVersion,
  promote,
  type ReleaseListing,
  type RolloutResult,
  registerRelease,
  rollback,
} from "../node/releases-client.js";
import type { PushResult } from "./push.js";

/**
 * tcli's release commands: `releases <app>`, `promote <app> --from --to`, `rollback <app>`, and
 * what `push` does with the node after an upload (register the version as a release). The
 * composition root (src/main/tcli.ts) hands in how it builds clients and prints.
 */

export interface CommandOpts {
  node?: string;
  json?: boolean;
  quiet?: boolean;
}

/** What src/main/tcli.ts lends every command file. */
export interface CommandKit {
  withCommon(cmd: Command): Command;
  clientFor(opts: { node?: string }): Promise<NodeClient>;
  print<T>(opts: CommandOpts, data: T, text: (d: T) => string): void;
  examples(...lines: string[]): string;
}

export function registerReleaseCommands(program: Command, kit: CommandKit): void {
  kit
    .withCommon(program.command("releases").summary("an app's releases, newest first, and where each runs"))
    .argument("<app>", "app name or uuid")
    .addHelpText("after", kit.examples("tcli releases hello-node", "tcli releases hello-node --json"))
    .action(async (ref: string, opts: CommandOpts) => {
      kit.print(opts, await listReleases(await kit.clientFor(opts), ref), formatReleases);
    });

  kit
    .withCommon(
      program
        .command("promote")
        .summary("roll the exact digest one environment runs (and verified) to the next one"),
    )
    .argument("<app>", "app name or uuid")
    .requiredOption("--from <env>", "the environment whose current release is promoted")
    .requiredOption("--to <env>", "the environment that gets it")
    .option("--release <id|digest>", "a release `--from` ran before, instead of its current one")
    .option("--no-queue", "fail with DEPLOY_LOCKED instead of waiting while --to is being rolled out")
    .addHelpText(
      "after",
      "\nOnly a release that ran in --from reaches --to, digest-pinned (else NOT_VERIFIED_IN <from>).\n" +
        "The rollout is a deploy record with steps; one rollout per environment runs at a time." +
        kit.examples(
          "tcli promote hello-node --from test --to prod",
          "tcli promote hello-node --from test --to prod --no-queue",
        ),
    )
    .action(
      async (
        ref: string,
        opts: CommandOpts & { from: string; to: string; release?: string; queue: boolean },
      ) => {
        const body: { from: string; to: string; release?: string } = { from: opts.from, to: opts.to };
        if (opts.release !== undefined) body.release = opts.release;
        const result = await promote(await kit.clientFor(opts), ref, body, opts.queue);
        kit.print(opts, result, formatRollout("promoted"));
      },
    );

  kit
    .withCommon(program.command("rollback").summary("put an environment back on the release it ran before"))
    .argument("<app>", "app name or uuid")
    .option("--env <env>", "the environment to roll back", "prod")
    .option("--to <id|digest>", "a release to go back to, instead of the one before the current one")
    .option("--no-queue", "fail with DEPLOY_LOCKED instead of waiting while --env is being rolled out")
    .option("--migrate", "run the release's [deploy] migrate before the swap (skipped otherwise)")
    .addHelpText(
      "after",
      "\nThe same zero-downtime swap as a deploy, pinned by digest, recorded as a deploy with steps." +
        kit.examples(
          "tcli rollback hello-node",
          "tcli rollback hello-node --migrate",
          "tcli rollback hello-node --env test --to 0193…",
          "tcli rollback hello-node --json",
        ),
    )
    .action(
      async (
        ref: string,
        opts: CommandOpts & { env: string; to?: string; queue: boolean; migrate?: boolean },
      ) => {
        const body: { env: string; to?: string; migrate?: boolean } = { env: opts.env };
        if (opts.to !== undefined) body.to = opts.to;
        if (opts.migrate) body.migrate = true;
        const result = await rollback(await kit.clientFor(opts), ref, body, opts.queue);
        kit.print(opts, result, formatRollout("rolled back"));
      },
    );
}

function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

function sourceOf(release: NodeRelease): string {
  const source = release.source;
  if ("artifact_version" in source) return `push ${source.artifact_version}`;
  return `${source.repo_url}@${source.commit_sha.slice(0, 12)}`;
}

export function formatReleases(listing: ReleaseListing): string {
  if (listing.releases.length === 0) return `${listing.app} has no releases yet\n`;
  const rows = listing.releases.map((r) => [
    r.id,
    shortDigest(r.digest),
    r.environments.join(",") || "-",
    r.created_at.replace(/\.\d+Z$/, "Z"),
    sourceOf(r),
  ]);
  const head = ["RELEASE", "DIGEST", "RUNS IN", "CREATED", "SOURCE"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(head), ...rows.map(line)].join("\n")}\n`;
}

function formatRollout(verb: string): (r: RolloutResult) => string {
  return (r) => {
    const lines = [
      `${verb} ${r.app} ${r.environment} to release ${r.release.id} (${shortDigest(r.release.digest)}) in ${r.duration_ms} ms${r.queued_ms > 0 ? `, after ${r.queued_ms} ms in the queue` : ""}`,
      `  deploy   ${r.deploy_id}`,
      ...r.targets.map(
        (t) => `  ${t.supervisor.padEnd(8)} ${t.success ? "ok" : `failed: ${t.error ?? "?"}`}`,
      ),
    ];
    return `${lines.join("\n")}\n`;
  };
}

/** sha256 of a file, streamed. */
async function fileDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/**
 * A pushed version as the node records it: the stamped manifest and each uploaded file's digest
 * (the node derives the release's content digest from them, so the same tree gives one release).
 */
export async function pushedVersion(result: PushResult): Promise<PushedVersion> {
  let manifestToml: string | undefined;
  const files: PushedVersion["files"] = [];
  for (const step of result.plan.steps) {
    if (step.kind === "upload-manifest") manifestToml = step.content;
    if (step.kind === "upload-file") files.push({ path: step.path, digest: await fileDigest(step.source) });
  }
  if (manifestToml === undefined) throw new Error("a push plan always uploads its manifest");
  return { version: `v${result.version}`, manifest_toml: manifestToml, files, name: result.name };
}

/** After a push: registers the version with the node, which records it as a release. */
export async function registerPush(client: NodeClient, result: PushResult): Promise<NodeRelease> {
  try {
    return await registerRelease(client, result.appId, await pushedVersion(result));
  } catch (err) {
    if (err instanceof TabbifyError) {
      throw new TabbifyError(
        err.code,
        `v${result.version} is uploaded, but the node did not record it as a release: ${err.message}`,
      );
    }
    throw err;
  }
}

export function formatRegistered(release: NodeRelease, nodeUrl: string): string {
  return `  release  ${release.id} (${shortDigest(release.digest)}) recorded by ${nodeUrl}\n`;
}
