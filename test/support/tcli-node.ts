/**
 * Helpers for tcli's node commands: the compiled tcli in its own process (stdin piped, HOME
 * pointed at a temp dir) and a real node with a tenant-token key and apps of two tenants.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import type { DeviceLoginOptions } from "../../src/node/device-login-routes.js";
import { type RunningNode, startNode } from "../../src/node/server.js";
import { repoRoot, tempDir } from "./tools.js";

const entry = join(repoRoot, "dist", "src", "main", "tcli.js");

/** The environment without anything that would point tcli elsewhere than the test says. */
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_") && k !== "HOME"),
);

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The compiled tcli as a child process, HOME set to `opts.home`. */
export function spawnTcli(
  args: string[],
  opts: { home: string; env?: NodeJS.ProcessEnv },
): ChildProcessWithoutNullStreams {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npx tsc -p .\` first`);
  return spawn(process.execPath, ["--enable-source-maps", entry, ...args], {
    cwd: opts.home,
    env: { ...cleanEnv, HOME: opts.home, ...opts.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
}

export function runTcli(
  args: string[],
  opts: { home: string; env?: NodeJS.ProcessEnv; stdin?: string },
): Promise<CliRun> {
  return new Promise((resolveRun, reject) => {
    const child = spawnTcli(args, opts);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolveRun({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? "");
  });
}

export const NODE_KEY = "tcli-node-key-0123456789abcdef";

export interface TcliStack {
  node: RunningNode;
  /** The node's data dir (its store, env key). */
  dataDir: string;
  /** Closes the node and starts it again on the same port and data dir (roster and memory lost). */
  restartNode(): Promise<void>;
  acmeToken: string;
  globexToken: string;
  close(): Promise<void>;
}

/** A node with the registry holding `acme-web` (tenant acme) and `globex-api` (tenant globex). */
export async function startTcliStack(
  opts: { supervisorKey?: string; deviceLogin?: DeviceLoginOptions } = {},
): Promise<TcliStack> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const key: SigningKey = {
    privateKey,
    publicKey,
    kid: await calculateJwkThumbprint(await exportJWK(publicKey)),
  };
  const data = await tempDir("tcli-node");
  const start = (port: number) =>
    startNode({
      port,
      httpLogLevel: "silent",
      nodeKey: NODE_KEY,
      dataDir: data.path,
      ...(opts.supervisorKey ? { deploy: { supervisorKey: opts.supervisorKey } } : {}),
      deviceLogin: {
        issueTenantToken: (o) => issueTenantToken(key, o),
        intervalSecs: 1,
        ...opts.deviceLogin,
      },
      registry: {
        allowedServers: ["edge-1"],
        verifyTenantToken: (t) => verifyTenantToken(key, t),
        seedApps: [
          { name: "acme-web", tenant: "acme" },
          { name: "globex-api", tenant: "globex" },
        ],
      },
    });
  const stack: TcliStack = {
    node: await start(0),
    dataDir: data.path,
    restartNode: async () => {
      const port = stack.node.port;
      await stack.node.close();
      stack.node = await start(port);
    },
    acmeToken: await issueTenantToken(key, { tenant: "acme", subject: "dev", ttlSeconds: 600 }),
    globexToken: await issueTenantToken(key, { tenant: "globex", subject: "dev", ttlSeconds: 600 }),
    close: async () => {
      await stack.node.close();
      await data.remove();
    },
  };
  return stack;
}
