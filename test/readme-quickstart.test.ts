/**
 * The README's "A first app" block, run as a newcomer runs it: every shell command of its first
 * ```sh block, parsed out of README.md (so a wrong edit of the README breaks this test), in a
 * fresh directory holding the project's package.json scripts, bin/ and a copy of examples/, in
 * order, with `bash -c`. Only the default ports are swapped for free ones (other tests run in
 * parallel) and `<app id>` for the id the push printed. A command that exits non-zero fails the
 * test, and a `# comment` that says what a command prints is checked against its output.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { repoRoot, spawnProcess, tempDir } from "./support/tools.js";
import { freeUpPorts, type UpPorts } from "./support/up-stack.js";

interface QuickStartCommand {
  /** The command as the README has it (continuation lines joined). */
  text: string;
  /** What its trailing comment says it prints, if it says. */
  comment: string | undefined;
}

/** The first ```sh block after `## A first app`, one entry per command (`\` continuations joined). */
export function quickStartCommands(readme: string): QuickStartCommand[] {
  const section = readme.indexOf("\n## A first app");
  assert.ok(section >= 0, "README.md has no `## A first app` section");
  const start = readme.indexOf("```sh\n", section);
  const end = readme.indexOf("\n```", start + 6);
  assert.ok(start >= 0 && end > start, "the `## A first app` section has no ```sh block");
  const commands: QuickStartCommand[] = [];
  let pending = "";
  for (const line of readme.slice(start + 6, end).split("\n")) {
    if (line.trim() === "") continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trimEnd()} `;
      continue;
    }
    const full = `${pending}${line.trimStart()}`;
    pending = "";
    const hash = full.search(/\s#\s/);
    commands.push({
      text: (hash >= 0 ? full.slice(0, hash) : full).trim(),
      comment:
        hash >= 0
          ? full
              .slice(hash)
              .replace(/^\s#\s/, "")
              .trim()
          : undefined,
    });
  }
  return commands;
}

describe("the README's quick start, run literally", () => {
  let dir: { path: string; remove(): Promise<void> };
  let ports: UpPorts;
  let up: ReturnType<typeof spawnProcess> | undefined;
  const env = () => {
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("TABBIFY_") && !k.startsWith("npm_")),
    );
    return { ...clean, HOME: join(dir.path, "home") };
  };

  before(async () => {
    dir = await tempDir("readme-quickstart");
    ports = await freeUpPorts();
    // The project as a clone has it, for what the commands touch: `npm run up`'s script and the
    // bins `npx` runs (the real bin/, which runs the compiled dist/), and examples/ to push.
    // Not preup: it installs dependencies on a fresh clone, and these are installed already.
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
      name: string;
      bin: Record<string, string>;
      scripts: Record<string, string>;
    };
    writeFileSync(
      join(dir.path, "package.json"),
      JSON.stringify({ name: pkg.name, private: true, bin: pkg.bin, scripts: { up: pkg.scripts.up } }),
    );
    symlinkSync(join(repoRoot, "bin"), join(dir.path, "bin"));
    cpSync(join(repoRoot, "examples"), join(dir.path, "examples"), { recursive: true });
    mkdirSync(join(dir.path, "home"));
  });
  after(async () => {
    if (up) {
      // Ctrl-C leaves the apps running by design; `tabbify down` stops them and the stack.
      spawnSync(
        process.execPath,
        [join(repoRoot, "dist", "src", "main", "tabbify.js"), "down", "--data", join(dir.path, ".tabbify")],
        {
          env: env(),
          timeout: 60_000,
        },
      );
      // down stops `up` itself too; npm then exits with it.
      if (up.child.exitCode === null) up.child.kill("SIGTERM");
      await up.exited;
    }
    await dir?.remove();
  });

  it("runs every command of `## A first app` and gets what the comments promise", async () => {
    const commands = quickStartCommands(readFileSync(join(repoRoot, "README.md"), "utf8"));
    assert.equal(commands[0]?.text, "npm run up", "the quick start begins with `npm run up`");
    assert.ok(commands.length >= 3, JSON.stringify(commands));
    const swap = (text: string, appId: string | undefined) => {
      let out = text
        .replaceAll("127.0.0.1:8090", `127.0.0.1:${ports.node}`)
        .replaceAll("127.0.0.1:8730", `127.0.0.1:${ports.supervisor}`);
      if (out.includes("<app id>")) {
        assert.ok(appId, `\`${text}\` needs the app id, which no earlier command printed`);
        out = out.replaceAll("<app id>", appId);
      }
      return out;
    };
    let appId: string | undefined;
    for (const [i, command] of commands.entries()) {
      if (i === 0) {
        const flags = `--node-port ${ports.node} --registry-port ${ports.registry} --auth-port ${ports.auth} --supervisor-port ${ports.supervisor}`;
        up = spawnProcess("bash", ["-c", `exec ${command.text} -- ${flags}`], { cwd: dir.path, env: env() });
        await up.waitForLine(/Tabbify is up/, 180_000);
        continue;
      }
      const text = swap(command.text, appId);
      const r = await runBash(text, dir.path, env());
      assert.equal(r.code, 0, `\`${text}\` failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
      if (/\btcli push\b/.test(text)) {
        appId = /\b([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})\b/.exec(
          r.stdout + r.stderr,
        )?.[1];
        assert.ok(appId, `the push printed no app id:\n${r.stdout}`);
        assert.match(r.stdout, new RegExp(`/app/${appId}\\b`), "and its URL");
      }
      // "# hello from hello-node v1": the command prints that.
      if (command.comment && /^hello from /.test(command.comment))
        assert.match(r.stdout, new RegExp(command.comment));
    }
  });
});

function runBash(
  command: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
