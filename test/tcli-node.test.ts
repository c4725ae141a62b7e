/**
 * tcli's node commands end to end: the compiled CLI in its own process against a real node
 * (store, registry, tenant tokens): login and logout, apps, status, the CLI's usage rules.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NODE_KEY, runTcli, startTcliStack, type TcliStack } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

describe("tcli against a node", () => {
  let stack: TcliStack;
  let admin: { path: string; remove(): Promise<void> };
  let acme: { path: string; remove(): Promise<void> };
  const nodeArgs = () => ["--node", stack.node.url];

  before(async () => {
    stack = await startTcliStack();
    admin = await tempDir("tcli-home-admin");
    acme = await tempDir("tcli-home-acme");
  });
  after(async () => {
    await stack?.close();
    await admin?.remove();
    await acme?.remove();
  });

  it("refuses a wrong token at login and saves nothing", async () => {
    const r = await runTcli(["login", "--token-stdin", ...nodeArgs()], {
      home: admin.path,
      stdin: "not-the-key\n",
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /refused this token; nothing was saved/);
    assert.equal(existsSync(join(admin.path, ".tabbify", "credentials")), false);
  });

  it("logs in with the node key from stdin, checked first, saved 0600 in a 0700 dir", async () => {
    const r = await runTcli(["login", "--token-stdin", ...nodeArgs()], {
      home: admin.path,
      stdin: `${NODE_KEY}\n`,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /logged in to http:\/\/127\.0\.0\.1:\d+ \(the token sees 2 apps\)/);
    const file = join(admin.path, ".tabbify", "credentials");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(admin.path, ".tabbify"))).mode & 0o777, 0o700);
    const saved = JSON.parse(await readFile(file, "utf8")) as { nodes: Record<string, { token: string }> };
    assert.equal(saved.nodes[stack.node.url]?.token, NODE_KEY);
  });

  it("lists every app for the node key, as text and as JSON", async () => {
    const text = await runTcli(["apps", ...nodeArgs()], { home: admin.path });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^NAME +UUID +ENVS +STATE +VERSION +URL$/m);
    assert.match(text.stdout, /^acme-web +[0-9a-f-]{36} +prod +not running +- +http:/m);
    assert.match(text.stdout, /^globex-api /m);
    const json = await runTcli(["apps", "--json", ...nodeArgs()], { home: admin.path });
    const rows = JSON.parse(json.stdout) as Array<{
      name: string;
      tenant: string;
      state: string;
      url: string;
    }>;
    assert.deepEqual(
      rows.map((r) => [r.name, r.tenant, r.state]),
      [
        ["acme-web", "acme", "not running"],
        ["globex-api", "globex", "not running"],
      ],
    );
  });

  it("shows an app's status by name and by uuid", async () => {
    const byName = await runTcli(["status", "acme-web", "--json", ...nodeArgs()], { home: admin.path });
    assert.equal(byName.code, 0, byName.stderr);
    const s = JSON.parse(byName.stdout) as {
      app: { uuid: string; name: string };
      targets: unknown[];
      last_deploy: unknown;
    };
    assert.equal(s.app.name, "acme-web");
    assert.deepEqual(s.targets, []);
    assert.equal(s.last_deploy, null);
    const byUuid = await runTcli(["status", s.app.uuid, ...nodeArgs()], { home: admin.path });
    assert.equal(byUuid.code, 0, byUuid.stderr);
    assert.match(byUuid.stdout, /^acme-web \([0-9a-f-]{36}\), tenant acme$/m);
    assert.match(byUuid.stdout, /last deploy +none/);
  });

  it("scopes a tenant token to its tenant's apps; another tenant's app is not found", async () => {
    const login = await runTcli(["login", "--token-stdin", ...nodeArgs()], {
      home: acme.path,
      stdin: stack.acmeToken,
    });
    assert.equal(login.code, 0, login.stderr);
    const apps = await runTcli(["apps", "--json", ...nodeArgs()], { home: acme.path });
    assert.equal(apps.code, 0, apps.stderr);
    const rows = JSON.parse(apps.stdout) as Array<{ name: string; state: string }>;
    assert.deepEqual(
      rows.map((r) => r.name),
      ["acme-web"],
    );
    assert.equal(rows[0]?.state, "unknown", "the roster is the node key's");
    const other = await runTcli(["status", "globex-api", ...nodeArgs()], { home: acme.path });
    assert.equal(other.code, 1);
    assert.match(
      other.stderr,
      /app globex-api is not in the registry\n {2}next: tcli apps lists the apps you may see/,
    );
  });

  it("takes the node URL from TABBIFY_CONTROL_PLANE_URL before TABBIFY_NODE_URL", async () => {
    const r = await runTcli(["apps", "--json"], {
      home: admin.path,
      env: { TABBIFY_CONTROL_PLANE_URL: stack.node.url, TABBIFY_NODE_URL: "http://127.0.0.1:1" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 2);
  });

  it("answers usage errors with exit 2 and the command's help, and every command has examples", async () => {
    const unknown = await runTcli(["apps", "--frobnicate", ...nodeArgs()], { home: admin.path });
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr, "tcli apps: unknown option --frobnicate (see tcli apps --help)\n");
    const missing = await runTcli(["status"], { home: admin.path });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required argument 'app' \(see tcli status --help\)/);
    for (const command of [
      "push",
      "login",
      "logout",
      "apps",
      "status",
      "logs",
      "stop",
      "start",
      "restart",
      "rm",
      "deploys",
      "env",
    ]) {
      const help = await runTcli([command, "--help"], { home: admin.path });
      assert.equal(help.code, 0, `${command} --help`);
      assert.match(help.stdout, /Examples:\n {2}\$ tcli /, `${command} --help has examples`);
      for (const flag of ["--node", "--json", "--quiet"])
        assert.ok(help.stdout.includes(flag), `${command} ${flag}`);
    }
  });

  it("logs out, and then names the next step", async () => {
    const out = await runTcli(["logout", ...nodeArgs()], { home: admin.path });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /logged out of http:/);
    assert.equal(existsSync(join(admin.path, ".tabbify", "credentials")), false);
    const apps = await runTcli(["apps", ...nodeArgs()], { home: admin.path });
    assert.equal(apps.code, 1);
    assert.match(apps.stderr, /next: log in first: tcli login --node http:\/\/127\.0\.0\.1:\d+/);
  });

  it("says where the node is missing and what to do", async () => {
    const r = await runTcli(["apps", "--node", "http://127.0.0.1:1"], { home: admin.path });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach the node at http:\/\/127\.0\.0\.1:1/);
    assert.match(r.stderr, /next: is the node running\? start it with `tabbify up`/);
  });
});
