import type { Command } from "commander";
import { openArtifactStore } from "../../artifacts/open.js";
import { formatRegistered, registerPush } from "../../cli/commands-releases.js";
import { DockerCli } from "../../cli/docker.js";
import { formatPushResult, pushResultJson } from "../../cli/output.js";
import { noProgress, TerminalProgress } from "../../cli/progress.js";
import { pushApp } from "../../cli/push.js";
import { TabbifyError } from "../../core/errors.js";
import { artifactStoreConfig } from "../artifact-store-options.js";
import {
  addStoreOptions,
  type CommonOpts,
  clientFor,
  DEFAULT_NODE_URL,
  examples,
  NODE_URL_ENVS,
  resolved,
  storeValuesOf,
  withCommon,
} from "./kit.js";

/** `tcli push <dir>`: upload a directory as the app's next version, and record it on the node. */
export function registerPushCommand(program: Command): void {
  const push = withCommon(
    program.command("push").summary("publish a directory with a manifest.toml to the artifact store"),
  )
    .usage("<dir> [flags]")
    .argument("[dir...]", "the app directory (holds manifest.toml)");
  addStoreOptions(push)
    .option("--dry-run", "print the plan (keys, sizes, docker commands); upload nothing, run nothing")
    .option("--keep-latest", "leave latest on this version even when the node fails to start it")
    .addHelpText(
      "after",
      [
        "",
        "Uploads <dir> as the next version of its app: apps/<uuid>/v<N>/manifest.toml (stamped with",
        "[app].id), the directory's files (.gitignore/.tabbifyignore honoured; only the entry for wasm",
        'apps), image.tar.gz for [build] kind = "docker", then apps/<uuid>/latest = N. The app id',
        "comes from [app].id, else tabbify.lock, else a new UUID v7 recorded in tabbify.lock.",
        "S3 credentials come from the AWS default chain (AWS_ACCESS_KEY_ID/…, AWS_PROFILE, roles).",
        "With a node (logged in, or TABBIFY_TOKEN), the node records the version as a release and",
        "starts it in the app's first environment; when that start fails, latest goes back to the",
        "version before (the failed one stays in the store, and is never latest again) unless",
        "--keep-latest is given.",
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
      // With a token for the node (logged in, or TABBIFY_TOKEN), the node records the version as a
      // release. No readable token (or a --node given only for the summary's URL) means upload only.
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
          docker: new DockerCli(process.env),
          progress:
            process.stderr.isTTY && !dryRun && !opts.quiet
              ? new TerminalProgress(process.stderr)
              : noProgress,
          ...(opened.stagingDir ? { stagingDir: opened.stagingDir } : {}),
        });
        if (client?.hasToken()) {
          result.release = await registerPush(client, result);
          const failed = failedStart(result.release);
          if (failed && opts.keepLatest !== true) {
            result.latest = await opened.store.withdrawLatest(result.appId, result.version);
            result.withdrawn = failed;
          }
        }
        process.stdout.write(
          opts.json
            ? pushResultJson(result)
            : `${formatPushResult(result)}${result.release && client ? formatRegistered(result.release, client.url) : ""}`,
        );
        // Uploaded and recorded, but what serves is still the version before: a script must not
        // take the push for a deploy.
        if (failedStart(result.release ?? {})) process.exitCode = 1;
      } finally {
        opened.close();
      }
    });
}

/** The environment and error of the node's rollout of a pushed release, when it failed. */
function failedStart(release: object): { environment: string; error: string } | undefined {
  const rollout = (release as { rollout?: { state?: string; environment?: string; error?: string } }).rollout;
  if (rollout?.state !== "failed") return undefined;
  return { environment: rollout.environment ?? "?", error: rollout.error ?? "failed" };
}
