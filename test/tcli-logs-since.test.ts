/**
 * `tcli logs --since`: the runner stamps every line its workload writes as it arrives (streamed,
 * line by line), and the supervisors' and the node's log routes filter on those stamps, across the
 * rotated `.1` too, with and without `--follow`. A real supervisor and node, the compiled tcli.
 */
import assert from "node:assert/strict";
import { appendFile, copyFile, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fastSupervisorArgs, randomUuid, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import { NODE_KEY, runTcli, spawnTcli, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

/** Writes `said <word>` on stdout for each `?say=<word>`, and `err <word>` on stderr for `?err=`. */
const sayApp = `import http from "node:http";
http.createServer((q, s) => {
  const u = new URL(q.url, "http://x");
  if (u.searchParams.get("say")) console.log("said " + u.searchParams.get("say"));
  if (u.searchParams.get("err")) console.error("err " + u.searchParams.get("err"));
  s.end("ok");
}).listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /;

describe("tcli logs --since, on lines the runner stamped", () => {
  let stack: TcliStack;
  let sup: SupervisorUnderTest;
  let home: { path: string; remove(): Promise<void> };
  let appDir: { path: string; remove(): Promise<void> };
  const uuid = randomUuid();
  let logFile: string;
  let between: string;
  const admin = () => ({
    home: home.path,
    env: { TABBIFY_TOKEN: NODE_KEY, TABBIFY_NODE_URL: stack.node.url },
  });
  /** Makes the app write `line` (on stdout, or stderr) and waits until the runner log holds it. */
  const say = async (word: string, stream: "say" | "err" = "say") => {
    const res = await fetch(`${stack.node.url}/app/${uuid}/?${stream}=${word}`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const line = `${stream === "say" ? "said" : "err"} ${word}`;
    await until(
      `"${line}" in the runner log`,
      async () => ((await readFile(logFile, "utf8")).includes(`${line}\n`) ? true : undefined),
      15_000,
    );
  };

  before(async () => {
    home = await tempDir("tcli-since-home");
    appDir = await tempDir("tcli-since-app");
    await writeFile(join(appDir.path, "say.mjs"), sayApp);
    sup = new SupervisorUnderTest([...fastSupervisorArgs(5_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: NODE_KEY,
    });
    stack = await startTcliStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.node.url);
    await sup.start();
    const started = await sup.call("POST", `/v1/apps/${uuid}/start`, {
      runtime: "process",
      artifact_dir: appDir.path,
      command: ["node", "say.mjs"],
    });
    assert.equal(started.status, 200, JSON.stringify(started.json));
    logFile = join(sup.dataDir, "runners", `${uuid}.log`);
    await until(
      "the app in the node's registry and on its door",
      async () => {
        const door = await fetch(`${stack.node.url}/app/${uuid}/`);
        await door.body?.cancel();
        // The node registers an app first seen on the roster within seconds, not at once.
        const entry = await fetch(`${stack.node.url}/api/v1/apps/${uuid}`, {
          headers: { authorization: `Bearer ${NODE_KEY}` },
        });
        await entry.body?.cancel();
        return door.status === 200 && entry.status === 200 ? true : undefined;
      },
      20_000,
    );
  });
  after(async () => {
    await sup?.cleanup();
    await stack?.close();
    await home?.remove();
    await appDir?.remove();
  });

  it("stamps every line in the runner log: the workload's stdout and stderr, and the runner's own", async () => {
    await say("first");
    await say("first-err", "err");
    const lines = (await readFile(logFile, "utf8")).split("\n").filter(Boolean);
    for (const line of lines) assert.match(line, STAMP, `unstamped: ${line}`);
    assert.ok(lines.some((l) => / said first$/.test(l)));
    assert.ok(lines.some((l) => / err first-err$/.test(l)));
    assert.ok(
      lines.some((l) => / serving /.test(l)),
      "the runner's own lines are there, stamped",
    );
  });

  it("--since a time shows only the lines after it; a duration shows them all", async () => {
    // A clear gap around the instant, so no stamp can tie with it.
    await new Promise((r) => setTimeout(r, 50));
    between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 50));
    await say("second");
    const since = await runTcli(["logs", uuid, "--since", between], admin());
    assert.equal(since.code, 0, since.stderr);
    assert.equal(since.stdout, "test-sup | said second\n");
    const hour = await runTcli(["logs", uuid, "--since", "1h"], admin());
    assert.equal(hour.code, 0, hour.stderr);
    assert.match(hour.stdout, /test-sup \| said first\n(.*\n)*test-sup \| said second\n$/);
    assert.match(hour.stdout, /test-sup \| err first-err\n/);

    const stamped = await runTcli(["logs", uuid, "--since", between, "--timestamps", "--json"], admin());
    assert.equal(stamped.code, 0, stamped.stderr);
    const entry = JSON.parse(stamped.stdout) as { target: string; line: string };
    assert.equal(entry.target, "test-sup");
    assert.match(entry.line, STAMP);
    assert.ok(entry.line.slice(0, 24) >= between, `${entry.line} is stamped after ${between}`);
    assert.ok(entry.line.endsWith(" said second"));
  });

  it("--since reads through the rotated .1, and --tail keeps the last lines of those", async () => {
    await copyFile(logFile, `${logFile}.1`);
    await truncate(logFile, 0);
    await say("third");
    const r = await runTcli(["logs", uuid, "--since", between], admin());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "test-sup | said second\ntest-sup | said third\n");
    const last = await runTcli(["logs", uuid, "--since", between, "--tail", "1"], admin());
    assert.equal(last.stdout, "test-sup | said third\n");
    // A line written without a stamp (e.g. a crash trace) goes with the stamped line before it.
    await appendFile(logFile, "    at a stack frame\n");
    const withBare = await runTcli(["logs", uuid, "--since", between], admin());
    assert.match(withBare.stdout, /said third\ntest-sup \| {5}at a stack frame\n$/);
  });

  it("--follow with --since prints the lines since then, then new ones as they come", async () => {
    const child = spawnTcli(["logs", uuid, "--since", between, "-f"], admin());
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      await until("the history", async () => (out.includes("said third\n") ? true : undefined), 15_000);
      await say("fourth");
      await until(
        "the followed line",
        async () => (out.includes("said fourth\n") ? true : undefined),
        15_000,
      );
      assert.ok(!out.includes("said first"), out);
      assert.ok(out.startsWith("test-sup | said second\n"), out);
    } finally {
      child.kill("SIGTERM");
    }
  });

  it("refuses a since that is neither a duration nor a time, on every surface", async () => {
    const cli = await runTcli(["logs", uuid, "--since", "yesterday"], admin());
    assert.equal(cli.code, 2, cli.stderr);
    assert.match(cli.stderr, /--since takes a duration/);
    const node = await fetch(`${stack.node.url}/api/v1/apps/${uuid}/logs?since=yesterday`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    assert.equal(node.status, 400, await node.text());
    const direct = await sup.call("GET", `/v1/apps/${uuid}/logs?since=2026-13-99T99:99Z`);
    assert.equal(direct.status, 400, JSON.stringify(direct.json));
    const ok = await fetch(`${sup.base}/v1/apps/${uuid}/logs?since=5m`, {
      headers: { authorization: `Bearer ${sup.apiKey}` },
    });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /^said second\n/m, "the supervisor drops stamps unless asked");
  });
});
