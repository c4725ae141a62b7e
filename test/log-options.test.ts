/**
 * `--log-format` and `--log-level` on every long-running role: auth, registry, node, supervisor,
 * the runners a supervisor spawns, and `tabbify up` with the roles it starts. json is one object
 * per line on stderr (time, level, component, msg); the level filters; flag beats env.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { processSpec, randomUuid, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { freePort, repoRoot, tempDir } from "./support/tools.js";
import { freeUpPorts } from "./support/up-stack.js";

const entry = join(repoRoot, "dist", "src", "main", "tabbify.js");
const LEVELS = new Set(["debug", "info", "warn", "error"]);
const PRETTY = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S+ /;

interface Run {
  stdout: string;
  stderr: string;
}

/** Starts a role, waits until `ready` answers 200 (or stdout matches), SIGTERMs it, returns its output. */
async function runRole(
  args: string[],
  ready: { url?: string; stdout?: RegExp },
  env: NodeJS.ProcessEnv = {},
): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_")));
  const child = spawn(process.execPath, [entry, ...args], {
    env: { ...clean, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: Run = { stdout: "", stderr: "" };
  child.stdout.on("data", (d: Buffer) => {
    out.stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out.stderr += d.toString();
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    await until(
      `${args[0]} ready`,
      async () => {
        if (child.exitCode !== null) throw new Error(`${args[0]} exited: ${out.stderr}`);
        if (ready.stdout) return ready.stdout.test(out.stdout) ? true : undefined;
        const res = await fetch(ready.url!).catch(() => undefined);
        await res?.body?.cancel();
        return res?.ok ? true : undefined;
      },
      90_000,
    );
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
  return out;
}

/** Every stderr line as a JSON log event; fails naming the first line that is not one. */
function jsonEvents(
  stderr: string,
  opts: { some: boolean } = { some: true },
): Array<Record<string, unknown>> {
  const lines = stderr.split("\n").filter(Boolean);
  if (opts.some) assert.ok(lines.length > 0, "some log lines");
  return lines.map((line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new assert.AssertionError({ message: `not one JSON object per line: ${line}` });
    }
    assert.ok(LEVELS.has(event.level as string), `level: ${line}`);
    assert.equal(typeof event.time, "string", line);
    assert.ok(!Number.isNaN(Date.parse(event.time as string)), line);
    assert.equal(typeof event.component, "string", line);
    assert.equal(typeof event.msg, "string", line);
    return event;
  });
}

describe("--log-format and --log-level on every role", () => {
  const dirs: Array<{ remove(): Promise<void> }> = [];
  const sups: SupervisorUnderTest[] = [];
  const dir = async (name: string) => {
    const d = await tempDir(name);
    dirs.push(d);
    return d.path;
  };
  after(async () => {
    for (const s of sups) await s.cleanup();
    for (const d of dirs) await d.remove();
  });

  /** One role's args on a free port with a fresh data dir, and what says it is ready. */
  const roles: Record<
    string,
    () => Promise<{ args: string[]; ready: { url?: string; stdout?: RegExp }; info: RegExp }>
  > = {
    auth: async () => {
      const port = await freePort();
      return {
        args: ["auth", "--listen", `127.0.0.1:${port}`, "--data", await dir("log-auth")],
        ready: { url: `http://127.0.0.1:${port}/health` },
        info: /signing key|shutting down/,
      };
    },
    registry: async () => {
      const port = await freePort();
      return {
        args: ["registry", "--listen", `127.0.0.1:${port}`, "--data", await dir("log-registry")],
        ready: { url: `http://127.0.0.1:${port}/v2/` },
        info: /shutting down/,
      };
    },
    node: async () => {
      const port = await freePort();
      return {
        args: ["node", "--listen", `127.0.0.1:${port}`, "--data", await dir("log-node")],
        ready: { url: `http://127.0.0.1:${port}/health` },
        info: /shutting down|request completed/,
      };
    },
  };

  for (const [name, setup] of Object.entries(roles)) {
    it(`${name}: json is one object per line, the level filters, the flag beats the env`, async () => {
      const json = await setup();
      const events = jsonEvents((await runRole([...json.args, "--log-format", "json"], json.ready)).stderr);
      assert.ok(
        events.some((e) => e.level === "info" && json.info.test(e.msg as string)),
        `an info event: ${JSON.stringify(events)}`,
      );
      assert.ok(
        events.every((e) => (e.component as string).startsWith(name)),
        JSON.stringify(events),
      );

      // TABBIFY_LOG_LEVEL=error drops info and warn; pretty lines read `time level component msg`.
      const quiet = await setup();
      const q = await runRole(quiet.args, quiet.ready, { TABBIFY_LOG_LEVEL: "error" });
      assert.equal(q.stderr, "", "nothing below error");

      // The flag wins over the env twin.
      const loud = await setup();
      const l = await runRole([...loud.args, "--log-level", "info"], loud.ready, {
        TABBIFY_LOG_LEVEL: "error",
        TABBIFY_LOG_FORMAT: "json",
      });
      jsonEvents(l.stderr);
      assert.match(l.stderr, /"level":"info"/);
      const pretty = await setup();
      const p = await runRole([...pretty.args, "--log-format", "pretty"], pretty.ready, {
        TABBIFY_LOG_FORMAT: "json",
      });
      const lines = p.stderr.split("\n").filter(Boolean);
      assert.ok(lines.length > 0);
      for (const line of lines) assert.match(line, PRETTY);
    });
  }

  it("a bad value is a usage error naming the flag", async () => {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [entry, "auth", "--listen", `127.0.0.1:${port}`, "--log-format", "xml"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    assert.equal(code, 2, stderr);
    assert.match(stderr, /--log-format wants pretty or json, got "xml"/);
  });

  it("supervisor and the runners it spawns: json events, stamped in the runner log; the level reaches the runner", async () => {
    for (const level of ["info", "warn"] as const) {
      const sup = new SupervisorUnderTest([
        "--warm-spares",
        "0",
        "--log-format",
        "json",
        "--log-level",
        level,
      ]);
      sups.push(sup);
      await sup.start();
      const uuid = randomUuid();
      const started = await sup.call("POST", `/v1/apps/${uuid}/start`, processSpec());
      assert.equal(started.status, 200, JSON.stringify(started.json));
      const events = jsonEvents(sup.log, { some: level === "info" });
      assert.ok(
        events.every((e) => (e.component as string).startsWith("supervisor")),
        sup.log,
      );
      const runnerLog = await readFile(join(sup.dataDir, "runners", `${uuid}.log`), "utf8");
      const own = runnerLog
        .split("\n")
        .map((l) => l.replace(/^\S+Z /, ""))
        .filter((l) => l.startsWith("{"));
      const runnerEvents = own.map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(
        runnerEvents.every((e) => (e.component as string).startsWith("runner")),
        runnerLog,
      );
      if (level === "info") {
        assert.ok(
          events.some((e) => e.msg === "listening"),
          sup.log,
        );
        assert.ok(
          runnerEvents.some((e) => e.msg === "serving"),
          runnerLog,
        );
      } else {
        assert.ok(!events.some((e) => e.level === "info"), sup.log);
        assert.ok(!runnerEvents.some((e) => e.level === "info"), runnerLog);
      }
      await sup.cleanup();
    }
  });

  it("tabbify up: its own lines and every role's, one JSON object per line", async () => {
    const data = await dir("log-up");
    const ports = await freeUpPorts();
    const run = await runRole(
      [
        "up",
        "--data",
        data,
        "--node-port",
        String(ports.node),
        "--registry-port",
        String(ports.registry),
        "--auth-port",
        String(ports.auth),
        "--supervisor-port",
        String(ports.supervisor),
        "--log-format",
        "json",
      ],
      { stdout: /Tabbify is up/ },
    );
    const events = jsonEvents(run.stderr);
    const components = new Set(events.map((e) => (e.component as string).split(/[ .]/)[0]));
    for (const role of ["auth", "registry", "supervisor", "up"]) {
      assert.ok(components.has(role), `${role} in ${[...components].join(", ")}`);
    }
  });
});
