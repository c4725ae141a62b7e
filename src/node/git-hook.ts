/**
 * The pre-receive hook of the node's push repositories (run by `git receive-pack`, which
 * `git http-backend` started for a push). For an update of the deploy branch it makes the pushed
 * objects visible outside the push's quarantine (a push of the sha to `refs/tabbify/staged/…` of
 * the same repository, which this hook lets through), asks the node to deploy the sha, and prints
 * the node's progress lines: git hands them to the pusher as `remote:` lines. A failed deploy
 * exits 1, so the push is refused and `git push` exits non-zero.
 *
 * The node's callback URL and a token good for this one push arrive in the environment
 * (TABBIFY_HOOK_URL, TABBIFY_HOOK_TOKEN), set by the node for this http-backend run only.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import type { Static } from "@sinclair/typebox";
import type { TabbifyError } from "../core/errors.js";
import { NodeClient } from "./client.js";
import type { GitHookBody } from "./schemas/git.js";

const ZERO = /^0{40}$/;
const SHA = /^[0-9a-f]{40}$/;

async function main(): Promise<number> {
  const url = process.env["TABBIFY_HOOK_URL"];
  const token = process.env["TABBIFY_HOOK_TOKEN"];
  const branch = process.env["TABBIFY_HOOK_BRANCH"] ?? "main";
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const options: string[] = [];
  const count = Number(process.env["GIT_PUSH_OPTION_COUNT"] ?? "0");
  for (let i = 0; i < count; i++) options.push(process.env[`GIT_PUSH_OPTION_${i}`] ?? "");
  const noWait = options.includes("no-wait");
  for (const line of input.split("\n")) {
    const [, sha, ref] = line.trim().split(" ");
    if (ref !== `refs/heads/${branch}` || sha === undefined || ZERO.test(sha) || !SHA.test(sha)) continue;
    if (url === undefined || token === undefined) {
      process.stdout.write("tabbify: this repository is pushed to through the node only\n");
      return 1;
    }
    // The staging push reads the quarantined objects (GIT_OBJECT_DIRECTORY stays) but is itself
    // no hook of a quarantined push: its receive-pack moves the objects into the repository.
    const env = { ...process.env };
    delete env["GIT_QUARANTINE_PATH"];
    const staged = spawnSync(
      "git",
      ["push", "--quiet", "--no-verify", "--", resolve("."), `${sha}:refs/tabbify/staged/${sha}`],
      { stdio: ["ignore", "inherit", "inherit"], env },
    );
    if (staged.status !== 0) {
      process.stdout.write("tabbify: could not stage the pushed commit for the build\n");
      return 1;
    }
    const hookUrl = new URL(url);
    const body: Static<typeof GitHookBody> & { ref: string } = { sha, ref, no_wait: noWait };
    let progress: ReadableStream<Uint8Array>;
    try {
      progress = await new NodeClient({ url: hookUrl.origin }).postForText(hookUrl.pathname, body, {
        "x-tabbify-hook-token": token,
      });
    } catch (err) {
      const status = (err as TabbifyError).detail as { status?: number } | undefined;
      process.stdout.write(
        `tabbify: the node refused the deploy (${status?.status ?? "no answer"}): ${(err as Error).message}\n`,
      );
      return 1;
    }
    let last = "";
    const decoder = new TextDecoder();
    for await (const chunk of progress) {
      const text = decoder.decode(chunk as Uint8Array, { stream: true });
      process.stdout.write(text);
      last = (last + text).slice(-200);
    }
    return /TABBIFY-OK\s*$/.test(last) ? 0 : 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stdout.write(`tabbify: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
