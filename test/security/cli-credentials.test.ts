/**
 * Attacks on tcli's credentials: a token on argv, a credentials dir others can read, a token
 * echoed into output or errors, and one tenant reaching another's app.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "../support/tcli-node.js";
import { tempDir } from "../support/tools.js";

describe("cli: credentials and tenant scoping", () => {
  let stack: TcliStack;
  let home: { path: string; remove(): Promise<void> };
  const nodeArgs = () => ["--node", stack.node.url];

  before(async () => {
    stack = await startTcliStack();
    home = await tempDir("tcli-sec-home");
  });
  after(async () => {
    await stack?.close();
    await home?.remove();
  });

  it("takes no token on argv", async () => {
    const r = await runTcli(["login", "--token", NODE_KEY, ...nodeArgs()], { home: home.path });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option --token \(see tcli login --help\)/);
    assert.ok(!r.stderr.includes(NODE_KEY) && !r.stdout.includes(NODE_KEY));
  });

  it("tightens a world-readable ~/.tabbify to 0700 and writes the file 0600, leaving no temp file", async () => {
    await mkdir(join(home.path, ".tabbify"), { mode: 0o755 });
    await chmod(join(home.path, ".tabbify"), 0o755);
    const r = await runTcli(["login", "--token-stdin", ...nodeArgs()], { home: home.path, stdin: NODE_KEY });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await stat(join(home.path, ".tabbify"))).mode & 0o777, 0o700);
    assert.equal((await stat(join(home.path, ".tabbify", "credentials"))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(home.path, ".tabbify")), ["credentials"]);
  });

  it("never prints a token, saved or refused", async () => {
    const refused = "refused-token-value-9f8e7d6c";
    const bad = await runTcli(["login", "--token-stdin", ...nodeArgs()], { home: home.path, stdin: refused });
    assert.equal(bad.code, 1);
    for (const args of [
      ["apps", ...nodeArgs()],
      ["apps", "--json", ...nodeArgs()],
      ["status", "acme-web", "--json", ...nodeArgs()],
      ["status", "no-such-app", ...nodeArgs()],
    ]) {
      const r = await runTcli(args, { home: home.path });
      const out = r.stdout + r.stderr + bad.stdout + bad.stderr;
      assert.ok(!out.includes(NODE_KEY), `${args[0]} printed the node key`);
      assert.ok(!out.includes(refused), `${args[0]} printed the refused token`);
    }
  });

  it("a garbled credentials file is an error naming the fix, not a crash", async () => {
    const other = await tempDir("tcli-sec-garbled");
    try {
      await mkdir(join(other.path, ".tabbify"), { mode: 0o700 });
      await writeFile(join(other.path, ".tabbify", "credentials"), "{not json", { mode: 0o600 });
      const r = await runTcli(["apps", ...nodeArgs()], { home: other.path });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is not a tcli credentials file: remove it and run `tcli login` again/);
    } finally {
      await other.remove();
    }
  });

  it("one tenant's token cannot see or read another tenant's app (404 both ways)", async () => {
    for (const [token, own, foreign] of [
      [stack.acmeToken, "acme-web", "globex-api"],
      [stack.globexToken, "globex-api", "acme-web"],
    ] as const) {
      const h = await tempDir("tcli-sec-tenant");
      try {
        assert.equal(
          (await runTcli(["login", "--token-stdin", ...nodeArgs()], { home: h.path, stdin: token })).code,
          0,
        );
        const apps = JSON.parse(
          (await runTcli(["apps", "--json", ...nodeArgs()], { home: h.path })).stdout,
        ) as Array<{
          name: string;
        }>;
        assert.deepEqual(
          apps.map((a) => a.name),
          [own],
        );
        const res = await fetch(`${stack.node.url}/api/v1/apps/${foreign}`, {
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(res.status, 404);
        const r = await runTcli(["status", foreign, ...nodeArgs()], { home: h.path });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /is not in the registry/);
      } finally {
        await h.remove();
      }
    }
  });
});
