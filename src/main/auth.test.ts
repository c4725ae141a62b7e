import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AuthClient } from "../auth/client.js";
import { signingKeyFileName } from "../auth/keys.js";
import { parseTtl } from "./auth.js";

const tabbify = fileURLToPath(new URL("./tabbify.js", import.meta.url));
const root = await mkdtemp(join(tmpdir(), "tabbify-auth-cli-"));
const children: ChildProcess[] = [];
after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await rm(root, { recursive: true, force: true });
});

const cleanEnv = { ...process.env, AUTH_DATA_DIR: "", AUTH_LISTEN: "" };

async function cli(args: string[], env: NodeJS.ProcessEnv = cleanEnv) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [tabbify, "auth", ...args], {
      env,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const lastLine = (text: string) => text.trimEnd().split("\n").at(-1) ?? "";

/** Starts `tabbify auth` and resolves with the URL it prints once it listens. */
function startServer(args: string[], env: NodeJS.ProcessEnv = cleanEnv) {
  const child = spawn(process.execPath, [tabbify, "auth", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m?.[1]) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`tabbify auth exited ${code} before listening: ${stderr}`)));
  });
  return { child, url, exited, output: () => ({ stdout, stderr }) };
}

test("auth token prints a JWT as the last stdout line; the served key validates it over HTTP", async () => {
  const data = join(root, "e2e");
  const clockBefore = Math.floor(Date.now() / 1000);
  const issued = await cli([
    "token",
    "--tenant",
    "acme",
    "--subject",
    "alice",
    "--ttl",
    "15m",
    "--data",
    data,
  ]);
  assert.equal(issued.code, 0, issued.stderr);
  const token = lastLine(issued.stdout);
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.ok(!issued.stderr.includes(token), "the token must not be logged");
  assert.equal((await stat(join(data, signingKeyFileName))).mode & 0o777, 0o600);

  const server = startServer(["--listen", "127.0.0.1:0", "--data", data]);
  const url = await server.url;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(url, "http://127.0.0.1:0");
  const identity = await new AuthClient(url).validate(token);
  assert.deepEqual(
    { subject: identity.subject, tenant: identity.tenant, network: identity.network },
    { subject: "alice", tenant: "acme", network: "acme" },
  );
  // Bounded by the clock before and after the mint, not a few seconds' margin a loaded machine overruns.
  const clockAfter = Math.floor(Date.now() / 1000);
  assert.ok(
    identity.expiresAt >= clockBefore + 900 && identity.expiresAt <= clockAfter + 900,
    `expires at ${identity.expiresAt}, minted between ${clockBefore} and ${clockAfter}`,
  );
  const health = await fetch(`${url}/health`);
  assert.deepEqual(await health.json(), { status: "ok" });

  // a token minted with another data dir's key is not one of this server's
  const foreign = await cli([
    "token",
    "--tenant",
    "acme",
    "--subject",
    "mallory",
    "--data",
    join(root, "other"),
  ]);
  await assert.rejects(new AuthClient(url).validate(lastLine(foreign.stdout)), /not valid/);

  server.child.kill("SIGTERM");
  assert.equal(await server.exited, 0);
  const { stderr } = server.output();
  assert.ok(!stderr.includes(token), "the token must not be logged");
});

test("env twins AUTH_LISTEN and AUTH_DATA_DIR, and SIGINT stops the server", async () => {
  const data = join(root, "env");
  const server = startServer([], { ...cleanEnv, AUTH_LISTEN: "127.0.0.1:0", AUTH_DATA_DIR: data });
  const url = await server.url;
  const issued = await cli(["token", "--tenant", "globex", "--subject", "bob"], {
    ...cleanEnv,
    AUTH_DATA_DIR: data,
  });
  assert.equal(issued.code, 0, issued.stderr);
  assert.equal((await new AuthClient(url).validate(lastLine(issued.stdout))).tenant, "globex");
  server.child.kill("SIGINT");
  assert.equal(await server.exited, 0);
});

test("--help lists flags and env vars for both forms", async () => {
  const serveHelp = await cli(["--help"]);
  assert.equal(serveHelp.code, 0);
  for (const s of ["--listen", "--data", "AUTH_LISTEN", "AUTH_DATA_DIR", "127.0.0.1:8091", "auth token"]) {
    assert.ok(serveHelp.stdout.includes(s), `serve help mentions ${s}`);
  }
  const tokenHelp = await cli(["token", "--help"]);
  assert.equal(tokenHelp.code, 0);
  for (const s of ["--tenant", "--subject", "--ttl", "--data", "AUTH_DATA_DIR", "24h"]) {
    assert.ok(tokenHelp.stdout.includes(s), `token help mentions ${s}`);
  }
});

test("usage errors are clear and exit 2", async () => {
  const data = join(root, "usage");
  const cases: [string[], RegExp][] = [
    [["token", "--subject", "alice", "--data", data], /--tenant is required/],
    [["token", "--tenant", "acme", "--subject", "alice", "--ttl", "soon", "--data", data], /--ttl wants/],
    [["token", "--tenant", "acme", "--subject", "alice", "--ttl", "0", "--data", data], /--ttl wants/],
    [
      ["token", "--tenant", "acme/x", "--subject", "alice", "--data", data],
      /not a valid registry path component/,
    ],
    [["token", "--tenant", "acme", "--subject", "alice", "--bogus", "--data", data], /bogus/],
    [["--listen", "nope", "--data", data], /--listen wants HOST:PORT/],
    [["serve-please"], /serve-please/],
  ];
  for (const [args, message] of cases) {
    const res = await cli(args);
    assert.equal(res.code, 2, args.join(" "));
    assert.match(res.stderr, message, args.join(" "));
    assert.equal(res.stdout, "", args.join(" "));
  }
});

test("parseTtl accepts the documented forms and nothing else", () => {
  const good: [string, number][] = [
    ["90s", 90],
    ["15m", 900],
    ["24h", 86400],
    ["7d", 604800],
    ["3600", 3600],
  ];
  for (const [value, seconds] of good) assert.equal(parseTtl(value), seconds, value);
  for (const value of ["", "0", "0s", "-5", "1.5h", "h", "10w", "5 m", "99999d", "1e3"]) {
    assert.throws(() => parseTtl(value), /--ttl wants/, JSON.stringify(value));
  }
});

test("a busy port is a clear error, not a crash", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const { port } = blocker.address() as AddressInfo;
  try {
    const res = await cli(["--listen", `127.0.0.1:${port}`, "--data", join(root, "busy")]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE \(LISTEN_FAILED\)/);
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
