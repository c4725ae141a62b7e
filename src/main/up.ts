/**
 * `tabbify up`: the all-in-one stack on loopback with embedded defaults. Every role runs as its
 * own child process started with the same flags a user would pass, so `up` proves the roles
 * compose over their HTTP APIs exactly as they do across hosts.
 *
 * Stopping `up` stops the control plane (auth, registry, node, supervisor). Runners are detached
 * by design and keep serving; the next `up` re-adopts them.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { isErrno, TabbifyError } from "../core/errors.js";
import { streamingProcessFlags } from "../core/node-flags.js";
import { type OptionSpec, optionsHelp, parseOptions } from "./flags.js";

const upOptions: OptionSpec[] = [
  { flag: "data", env: "TABBIFY_DATA_DIR", default: ".tabbify", help: "where every role keeps its state" },
  { flag: "host", env: "TABBIFY_HOST", default: "127.0.0.1", help: "loopback address every role listens on" },
  {
    flag: "node-port",
    env: "TABBIFY_NODE_PORT",
    default: "8090",
    help: "node: deploy API and /app/<uuid> proxy",
  },
  { flag: "registry-port", env: "TABBIFY_REGISTRY_PORT", default: "5000", help: "OCI registry /v2" },
  { flag: "auth-port", env: "TABBIFY_AUTH_PORT", default: "8091", help: "auth: POST /v1/validate" },
  {
    flag: "supervisor-port",
    env: "TABBIFY_SUPERVISOR_PORT",
    default: "8730",
    help: "the local supervisor's API",
  },
  { flag: "name", env: "SUPERVISOR_NAME", default: "local", help: "the local supervisor's display name" },
  { flag: "quiet", boolean: true, help: "do not echo the roles' logs" },
];

const tabbifyEntry = fileURLToPath(new URL("./tabbify.js", import.meta.url));

interface Role {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

function startRole(name: string, args: string[], env: NodeJS.ProcessEnv, echo: boolean): Role {
  const child = spawn(
    process.execPath,
    ["--enable-source-maps", ...streamingProcessFlags, tabbifyEntry, ...args],
    {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  for (const stream of [child.stdout, child.stderr]) {
    const lines = createInterface({ input: stream! });
    lines.on("line", (line) => {
      if (echo) process.stderr.write(`[${name}] ${line}\n`);
    });
  }
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return { name, child, exited };
}

/** Resolves when `url` answers any HTTP status; rejects when the role exits or time runs out. */
async function waitAnswering(role: Role, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void role.exited.then((c) => {
    exitCode = c;
  });
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new TabbifyError("ROLE_FAILED", `${role.name} exited with code ${exitCode} while starting`);
    }
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  throw new TabbifyError("ROLE_FAILED", `${role.name} did not answer on ${url} within ${timeoutMs / 1000} s`);
}

async function dockerAnswers(): Promise<boolean> {
  return new Promise((done) => {
    execFile("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 5000 }, (err) => done(!err));
  });
}

/** The node key: TABBIFY_NODE_KEY when set, else one kept in `<data>/node.key` (mode 0600). */
async function nodeKey(dataDir: string, env: NodeJS.ProcessEnv): Promise<{ key: string; source: string }> {
  if (env.TABBIFY_NODE_KEY) return { key: env.TABBIFY_NODE_KEY, source: "TABBIFY_NODE_KEY" };
  const path = join(dataDir, "node.key");
  try {
    return { key: (await readFile(path, "utf8")).trim(), source: path };
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
  const key = randomBytes(32).toString("base64url");
  await writeFile(path, `${key}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return { key, source: path };
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const opts = parseOptions(argv, env, upOptions);
  if (opts.help) {
    process.stdout.write(optionsHelp("tabbify up [flags]", upOptions));
    return 0;
  }
  const dataDir = resolve(opts.values.data!);
  const host = opts.values.host!;
  const echo = !opts.flags.quiet;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const { key, source: keySource } = await nodeKey(dataDir, env);

  const url = (port: string) => `http://${host}:${port}`;
  const authUrl = url(opts.values["auth-port"]!);
  const registryUrl = url(opts.values["registry-port"]!);
  const nodeUrl = url(opts.values["node-port"]!);
  const supervisorUrl = url(opts.values["supervisor-port"]!);
  const storeDir = join(dataDir, "artifacts");
  // Secrets reach the children through env only, never argv (argv is world-readable in /proc).
  const childEnv: NodeJS.ProcessEnv = { ...env, TABBIFY_NODE_KEY: key };

  const builder = await dockerAnswers();
  const roles: Role[] = [];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    for (const r of [...roles].reverse()) r.child.kill("SIGTERM");
    // A role that has not exited 10 s after SIGTERM is stuck: do not hang `up` on it.
    const kill = setTimeout(() => {
      for (const r of roles) if (r.child.exitCode === null) r.child.kill("SIGKILL");
    }, 10_000);
    await Promise.all(roles.map((r) => r.exited));
    clearTimeout(kill);
  };

  try {
    const auth = startRole(
      "auth",
      ["auth", "--listen", `${host}:${opts.values["auth-port"]}`, "--data", join(dataDir, "auth")],
      childEnv,
      echo,
    );
    roles.push(auth);
    await waitAnswering(auth, `${authUrl}/health`);

    const registry = startRole(
      "registry",
      [
        "registry",
        "--listen",
        `${host}:${opts.values["registry-port"]}`,
        "--data",
        join(dataDir, "registry"),
        "--auth-url",
        authUrl,
      ],
      childEnv,
      echo,
    );
    roles.push(registry);
    await waitAnswering(registry, `${registryUrl}/v2/`);

    const node = startRole(
      "node",
      [
        "node",
        "--listen",
        `${host}:${opts.values["node-port"]}`,
        "--data",
        join(dataDir, "node"),
        "--registry",
        new URL(registryUrl).host,
        "--auth-data",
        join(dataDir, "auth"),
        // The all-in-one stack lives on loopback, and so do the git servers it is tried with.
        "--allow-private-repos",
      ],
      childEnv,
      echo,
    );
    roles.push(node);
    await waitAnswering(node, `${nodeUrl}/health`);

    const supervisor = startRole(
      "supervisor",
      [
        "supervisor",
        "--name",
        opts.values.name!,
        "--listen",
        `${host}:${opts.values["supervisor-port"]}`,
        "--data",
        join(dataDir, "supervisor"),
        "--node",
        nodeUrl,
        "--mesh",
        "local",
        "--store",
        "local",
        "--store-dir",
        storeDir,
        // The local supervisor builds images (git push deploys) whenever a Docker daemon answers.
        ...(builder ? ["--builder", "--allow-private-repos"] : []),
      ],
      childEnv,
      echo,
    );
    roles.push(supervisor);
    await waitAnswering(supervisor, `${supervisorUrl}/health`);
  } catch (err) {
    await stopAll();
    throw err;
  }

  const registryHost = new URL(registryUrl).host;
  const keyExpr = keySource === "TABBIFY_NODE_KEY" ? "$TABBIFY_NODE_KEY" : `$(cat ${keySource})`;
  process.stdout.write(
    [
      "",
      `Tabbify is up. State lives in ${dataDir}.`,
      "",
      `  node        ${nodeUrl}        deploy API, topology, /app/<uuid> proxy`,
      `  registry    ${registryUrl}        OCI Distribution /v2 (tenant auth on)`,
      `  auth        ${authUrl}        tenant tokens, POST /v1/validate`,
      `  supervisor  ${supervisorUrl}        runs apps on this host (mesh: local${builder ? "; builds images" : "; no docker daemon, so no builds"})`,
      "",
      `Node key (Bearer for the node API): ${keyExpr}`,
      `  curl -H "Authorization: Bearer ${keyExpr}" ${nodeUrl}/v1/topology`,
      "",
      "Log in to the registry with a tenant token (tenant = the first path component you may push to):",
      `  TOKEN=$(npx tabbify auth token --tenant dev --subject $USER --data ${join(dataDir, "auth")} | tail -1)`,
      `  docker login ${registryHost} -u x -p "$TOKEN"`,
      `  docker push ${registryHost}/dev/<image>:<tag>`,
      "",
      "Run an example app:",
      `  npx tcli push examples/hello-node --store local --store-dir ${storeDir}`,
      `  curl -X POST ${supervisorUrl}/v1/apps/<uuid printed by tcli>/start`,
      `  curl ${nodeUrl}/app/<uuid>/`,
      "",
      "Deploy a GitHub repository with a Dockerfile and a tabbify.toml (needs a Docker daemon):",
      `  curl -X POST -H "Authorization: Bearer ${keyExpr}" ${nodeUrl}/v1/deploy \\`,
      `    -d '{"repo_url":"https://github.com/you/app","ref":"main","tenant":"dev"}'`,
      "",
      "Ctrl-C stops the control plane; running apps keep serving and are re-adopted by the next `up`.",
      "",
    ].join("\n"),
  );

  const signal = new Promise<string>((done) => {
    process.once("SIGINT", () => done("SIGINT"));
    process.once("SIGTERM", () => done("SIGTERM"));
  });
  const firstExit = Promise.race(roles.map((r) => r.exited.then((code) => ({ role: r.name, code }))));
  const outcome = await Promise.race([signal, firstExit]);
  if (typeof outcome === "string") {
    await stopAll();
    return 0;
  }
  if (!stopping)
    process.stderr.write(`tabbify up: ${outcome.role} exited (code ${outcome.code}); stopping the rest\n`);
  await stopAll();
  return 1;
}
