import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { access, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Static } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { type DeployEvent, followDeploy } from "../pipeline/executor.js";
import type { DeployRequest } from "../pipeline/plan.js";
import type { CallerResolver } from "./apps-identity.js";
import { ROSTER_TENANT } from "./apps-node.js";
import type { AppRegistry, Caller } from "./apps-registry.js";
import type { App } from "./apps-schema.js";
import type { DeployObserver } from "./audit-deploys.js";
import { callerFirst } from "./caller-first.js";
import { runGitHttpBackend } from "./git-http.js";
import type { NodePipeline } from "./pipeline.js";
import { type GitHookBody, gitHookSchema, gitSchema } from "./schemas/git.js";

/**
 * `git push` straight to the node: smart HTTP at `/git/<app>.git` through `git http-backend`.
 *
 *   GET  /git/<app>.git/info/refs?service=…   HTTP Basic: the node key or a tenant token as password
 *   POST /git/<app>.git/git-upload-pack        (fetch; the builder clones pushed commits this way)
 *   POST /git/<app>.git/git-receive-pack       (push; creates the bare repository on first use)
 *   POST /git-hook                             the repository's pre-receive hook, with a token
 *                                              minted for that one push (never reachable otherwise)
 *
 * A push to the app's branch (`main` unless the registry says otherwise) deploys the pushed sha
 * and the hook relays the deploy's progress as `remote:` lines; `-o no-wait` returns at once.
 * A tenant token pushes and fetches only its own tenant's apps.
 */

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const HOOK_SCRIPT = fileURLToPath(new URL("./git-hook.js", import.meta.url));

export interface GitPushOptions {
  dataDir: string;
  callers: CallerResolver;
  registry: AppRegistry;
  pipeline: NodePipeline;
  observer?: DeployObserver;
  /** The node's own URL (known once it listens): the repositories' clone URL and the hook's callback. */
  selfUrl: () => string;
  logger: Logger;
}

interface PendingPush {
  name: string;
  tenant: string;
  actor: string;
  appUuid?: string;
}

function tokenKey(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

function basicPassword(header: string | undefined): string | undefined {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header ?? "");
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}

function challenge(reply: FastifyReply, message: string): FastifyReply {
  return reply
    .code(401)
    .header("www-authenticate", 'Basic realm="tabbify", charset="UTF-8"')
    .type("text/plain")
    .send(`${message}\n`);
}

/** One progress line per deploy event, as the pusher reads it after `remote:`. */
function progressLine(event: DeployEvent): string {
  if (event.type === "step_started") return `-----> ${event.step}\n`;
  const message = (event.message ?? event.type).replace(/\s+$/, "");
  return `[${event.step}] ${message}\n`;
}

/** The bare repository of an app, created on first use with the deploy hook installed. */
export async function ensurePushRepo(dir: string): Promise<void> {
  try {
    await access(join(dir, "HEAD"));
    return;
  } catch {
    // first push: created below
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await git(dir, ["init", "--quiet", "--bare", "--initial-branch=main", "."]);
  for (const [key, value] of [
    ["http.receivepack", "true"],
    ["receive.advertisePushOptions", "true"],
    ["uploadpack.allowFilter", "true"],
    ["uploadpack.allowReachableSHA1InWant", "true"],
    ["gc.auto", "6700"],
  ]) {
    await git(dir, ["config", key!, value!]);
  }
  const hook = `#!/bin/sh\nexec '${process.execPath}' '${HOOK_SCRIPT}'\n`;
  await writeFile(join(dir, "hooks", "pre-receive"), hook, { mode: 0o755 });
}

const git = (cwd: string, args: string[]) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn("git", args, { cwd, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      if (out.length < 4096) out += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`git ${args[0]} exited ${code}`)),
    );
  });

/**
 * A repository on the node's own disk (`--allow-local-repos`, `tabbify up`): fetched into the app's
 * push repository, so the builder clones it from `/git/<app>.git` as it does a push. Returns that
 * URL and the commit `ref` named.
 */
export async function importLocalRepo(
  dataDir: string,
  selfUrl: string,
  source: string,
  ref: string,
): Promise<{ repoUrl: string; sha: string }> {
  const path = source.startsWith("file://") ? fileURLToPath(source) : source;
  const base = (path.replace(/\/+$/, "").split("/").pop() ?? "").replace(/\.git$/, "").toLowerCase();
  const name =
    base
      .replace(/[^a-z0-9-]/g, "-")
      .replace(/^-+/, "")
      .slice(0, 63) || "local";
  const dir = join(dataDir, "git", `${name}.git`);
  await ensurePushRepo(dir);
  try {
    await git(dir, ["fetch", "--quiet", "--no-tags", "--", path, `+${ref}:refs/tabbify/local`]);
  } catch {
    throw new TabbifyError(
      "GIT_REF_NOT_FOUND",
      `the local repository ${path} has no branch, tag or commit ${ref}`,
    );
  }
  const sha = (await git(dir, ["rev-parse", "--verify", "refs/tabbify/local^{commit}"])).trim();
  return { repoUrl: `${selfUrl}/git/${name}.git`, sha };
}

/** Deletes `refs/tabbify/staged/<sha>` of a push repository, if it is there. */
export async function pruneStagedRef(dir: string, sha: string): Promise<void> {
  await git(dir, ["update-ref", "-d", `refs/tabbify/staged/${sha}`]);
}

export function registerGitRoutes(app: FastifyInstance, opts: GitPushOptions): void {
  const root = join(opts.dataDir, "git");
  const pending = new Map<string, PendingPush>();

  const findApp = async (name: string): Promise<App | undefined> => {
    try {
      return await opts.registry.get({ actor: "system" }, name);
    } catch (err) {
      if (err instanceof TabbifyError && err.code === "APP_NOT_FOUND") return undefined;
      throw err;
    }
  };

  // A push's commit is staged under refs/tabbify/staged/<sha> only so the build can fetch it
  // before the push is accepted; once its deploy has ended, the ref goes (the branch holds the
  // commit if the push was accepted; otherwise `git gc --auto` may collect it).
  opts.pipeline.onDeployEnded(async (record) => {
    if (record.request.trigger !== "git-push") return;
    const m = /\/git\/([a-z0-9-]{1,63})\.git$/.exec(record.request.repoUrl);
    const sha = record.request.sha;
    if (!m || sha === undefined || !/^[0-9a-f]{40}$/.test(sha)) return;
    await pruneStagedRef(join(root, `${m[1]}.git`), sha).catch((err: unknown) =>
      opts.logger.warn("could not prune a staged ref", {
        sha,
        error: err instanceof Error ? err.message : String(err),
      }),
    );
  });

  app.register(async (scope) => {
    // The bodies are git's packs and negotiations: they stream into http-backend untouched.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_req, _payload, done) => done(null));

    scope.route({
      method: ["GET", "POST"],
      url: "/git/*",
      schema: gitSchema,
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const [path = "", query = ""] = req.url.split("?", 2) as [string, string?];
        const m = /^\/git\/([^/]+)\.git\/(info\/refs|git-upload-pack|git-receive-pack)$/.exec(path);
        if (!m || !NAME_RE.test(m[1]!)) {
          return reply.code(404).type("text/plain").send("no such repository: /git/<app>.git\n");
        }
        const name = m[1]!;
        const push = m[2] === "git-receive-pack" || /(^|&)service=git-receive-pack(&|$)/.test(query);
        const password = basicPassword(req.headers.authorization);
        if (password === undefined)
          return challenge(reply, "authenticate with the node key or a tenant token");
        let caller: Caller;
        try {
          caller = await opts.callers.resolve(`Bearer ${password}`);
        } catch {
          return challenge(reply, "the password is neither the node key nor a valid tenant token");
        }
        const existing = await findApp(name);
        if (existing && caller.tenant !== undefined && existing.tenant !== caller.tenant) {
          return reply.code(403).type("text/plain").send(`app ${name} belongs to another tenant\n`);
        }
        const dir = join(root, `${name}.git`);
        if (push) await ensurePushRepo(dir);
        else {
          try {
            await access(join(dir, "HEAD"));
          } catch {
            return reply.code(404).type("text/plain").send(`no repository ${name}.git: push to create it\n`);
          }
        }
        const env: NodeJS.ProcessEnv = { REMOTE_USER: caller.actor };
        let key: string | undefined;
        if (push) {
          const token = randomBytes(32).toString("base64url");
          key = tokenKey(token);
          const entry: PendingPush = {
            name,
            tenant: existing?.tenant ?? caller.tenant ?? ROSTER_TENANT,
            actor: caller.actor,
          };
          if (existing) entry.appUuid = existing.uuid;
          pending.set(key, entry);
          env["TABBIFY_HOOK_URL"] = `${opts.selfUrl()}/git-hook`;
          env["TABBIFY_HOOK_TOKEN"] = token;
          env["TABBIFY_HOOK_BRANCH"] = existing?.branch ?? "main";
        }
        reply.hijack();
        try {
          await runGitHttpBackend({
            req: req.raw,
            res: reply.raw,
            projectRoot: root,
            pathInfo: `/${name}.git/${m[2]}`,
            query,
            env,
          });
        } finally {
          if (key !== undefined) pending.delete(key);
        }
        if (push && m[2] === "git-receive-pack") {
          // Loose objects and packs are collected by git's own heuristics, after each push.
          spawn("git", ["gc", "--auto", "--quiet"], { cwd: dir, stdio: "ignore", detached: true }).unref();
        }
      },
    });
  });

  const hook = callerFirst((req) => {
    const token = req.headers["x-tabbify-hook-token"];
    const entry = typeof token === "string" ? pending.get(tokenKey(token)) : undefined;
    if (entry === undefined) throw new TabbifyError("UNAUTHORIZED", "not a push in progress");
    return entry;
  });
  app.post<{ Body: Static<typeof GitHookBody> }>(
    "/git-hook",
    { schema: gitHookSchema, onRequest: hook.onRequest },
    async (req, reply) => {
      const entry = hook.caller(req);
      const sha = req.body.sha;
      const request: DeployRequest = {
        trigger: "git-push",
        repoUrl: `${opts.selfUrl()}/git/${entry.name}.git`,
        ref: sha,
        sha,
        tenant: entry.tenant,
      };
      if (entry.appUuid !== undefined) request.appUuid = entry.appUuid;
      const id = await opts.pipeline.start("node", request);
      await opts.observer?.accepted(entry.actor, id, request);
      opts.logger.info("git push accepted", { app: entry.name, deploy_id: id, sha });
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.write(`deploying ${sha.slice(0, 12)} as deploy ${id}\n`);
      if (req.body.no_wait === true) {
        res.end(`not waiting (-o no-wait): follow ${opts.selfUrl()}/v1/deploy/${id}/events\nTABBIFY-OK\n`);
        return;
      }
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      for await (const event of followDeploy(opts.pipeline.store, id, 0, abort.signal))
        res.write(progressLine(event));
      await opts.pipeline.ended(id);
      const record = await opts.pipeline.store.get(id);
      for (const result of record?.results ?? []) {
        res.write(
          `target ${result.supervisor} (${result.runtime}): ${result.success ? "ok" : `failed: ${result.error ?? ""}`}\n`,
        );
      }
      // As `GET /v1/deploy/:id/status` says `success`: every target took the release.
      const failedTargets = (record?.results ?? []).filter((r) => !r.success).length;
      if (record?.status === "succeeded" && failedTargets === 0) {
        res.end(`app: ${opts.selfUrl()}/app/${record.app_uuid}/\nTABBIFY-OK\n`);
      } else {
        const error = record?.error
          ? `${record.error.code}: ${record.error.message}`
          : record?.status === "succeeded"
            ? `${failedTargets} of ${record.results.length} targets did not take the release (see above)`
            : "the deploy failed";
        res.end(`deploy failed: ${error}\nTABBIFY-FAILED\n`);
      }
    },
  );
}
