import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { sshCommand } from "../../src/node/ssh-fetch.js";
import { createGitRepo, type GitRepo } from "../support/git-repo.js";
import { makeClientKey, startSshd, type TestSshd } from "../support/sshd.js";
import { requireCommand, tempDir } from "../support/tools.js";

/**
 * Attacks on ssh:// deploys (the node fetches with its own key): a host whose key is not the
 * pinned one, option injection through the URL's user or host, the SSRF guard on the ssh host,
 * and the key leaking into a record or a log.
 */

const NODE_KEY = "gitreg-ssh-node-key";

let root: { path: string; remove(): Promise<void> };
let sshd: TestSshd;
let repo: GitRepo;
let sshDir: string;
/** allowPrivateRepos: reaches the loopback sshd. */
let lenient: RunningNode;
/** The default policy: loopback and the platform's own addresses are refused. */
let strict: RunningNode;
let captured = "";
const realWrite = process.stderr.write.bind(process.stderr);

async function deploy(node: RunningNode, repo_url: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${node.url}/v1/deploy`, {
    method: "POST",
    headers: { authorization: `Bearer ${NODE_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ repo_url, ref: "main", tenant: "team" }),
  });
  return { status: res.status, json: await res.json() };
}

const sshUrl = () => `ssh://${sshd.user}@127.0.0.1:${sshd.port}${repo.bareDir}`;

before(async () => {
  requireCommand("git", "git");
  root = await tempDir("tabbify-gitreg-ssh");
  sshDir = join(root.path, "node-ssh");
  sshd = await startSshd(join(root.path, "sshd"), makeClientKey(sshDir));
  repo = await createGitRepo(join(root.path, "srv"), "team", "target");
  await repo.commit({ "tabbify.toml": '[app]\nname = "target"\n' });
  // Everything the node logs is captured, to look for the key in it.
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    captured += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  lenient = await startNode({
    port: 0,
    dataDir: join(root.path, "node-lenient"),
    nodeKey: NODE_KEY,
    httpLogLevel: "info",
    deploy: { allowPrivateRepos: true, sshDir },
  });
  strict = await startNode({
    port: 0,
    dataDir: join(root.path, "node-strict"),
    nodeKey: NODE_KEY,
    httpLogLevel: "silent",
    deploy: { sshDir },
  });
});

after(async () => {
  process.stderr.write = realWrite;
  await lenient?.close();
  await strict?.close();
  await sshd?.stop();
  await root?.remove();
});

describe("ssh git remotes under attack", () => {
  it("a host whose key differs from the pinned known_hosts line is refused, and known_hosts is never written", async () => {
    const wrongKeyDir = join(root.path, "impostor");
    const impostor = makeClientKey(wrongKeyDir).trim().split(/\s+/).slice(0, 2).join(" ");
    const pinned = `[127.0.0.1]:${sshd.port} ${impostor}\n`;
    writeFileSync(join(sshDir, "known_hosts"), pinned, { mode: 0o600 });
    const r = await deploy(lenient, sshUrl());
    assert.equal(r.status, 502, JSON.stringify(r.json));
    assert.equal(r.json.code, "SSH_HOST_KEY_UNKNOWN");
    assert.doesNotMatch(
      sshd.log(),
      /Accepted publickey/,
      "the node authenticated to a host it does not trust",
    );
    assert.equal(readFileSync(join(sshDir, "known_hosts"), "utf8"), pinned, "known_hosts was changed");
  });

  it("option injection through the user, host or path is refused before ssh runs", async () => {
    const marker = join(root.path, "pwned");
    for (const repo_url of [
      `ssh://-oProxyCommand=touch%20${marker}/team/app.git`,
      `ssh://-oProxyCommand=touch%20${marker}@127.0.0.1/team/app.git`,
      `ssh://%2DoProxyCommand=touch%20${marker}@127.0.0.1/team/app.git`,
      `-oProxyCommand=touch${marker}@127.0.0.1:team/app.git`,
      `git@-oProxyCommand=touch${marker}:team/app.git`,
      `ssh://git@127.0.0.1/team/app.git;touch${marker}`,
      "ssh://git:password@127.0.0.1/team/app.git",
    ]) {
      const r = await deploy(lenient, repo_url);
      assert.ok(r.status >= 400 && r.status < 500, `${repo_url}: ${r.status} ${JSON.stringify(r.json)}`);
      assert.notEqual(r.json.code, undefined, repo_url);
    }
    assert.equal(existsSync(marker), false, "an injected ProxyCommand ran");
    assert.doesNotMatch(sshd.log(), /Accepted publickey/);
  });

  it("the SSRF guard applies to the ssh host: loopback is refused without --allow-private-repos", async () => {
    writeFileSync(join(sshDir, "known_hosts"), sshd.knownHostsLine, { mode: 0o600 });
    for (const repo_url of [
      sshUrl(),
      `${sshd.user}@127.0.0.1:${repo.bareDir}`,
      "ssh://git@169.254.169.254/x.git",
    ]) {
      const r = await deploy(strict, repo_url);
      assert.equal(r.status, 400, `${repo_url}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, "REPO_URL_REFUSED");
    }
    assert.doesNotMatch(sshd.log(), /Accepted publickey/);
  });

  it("a fetch with the node's key leaves the key in no event, status or log; ssh is given only its path", async () => {
    writeFileSync(join(sshDir, "known_hosts"), sshd.knownHostsLine, { mode: 0o600 });
    const r = await deploy(lenient, sshUrl());
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.match(sshd.log(), /Accepted publickey/);
    await new Promise((res) => setTimeout(res, 1000));
    const headers = { authorization: `Bearer ${NODE_KEY}` };
    const events = await fetch(`${lenient.url}/v1/deploy/${r.json.id}/events`, { headers }).then((x) =>
      x.text(),
    );
    const status = await fetch(`${lenient.url}/v1/deploy/${r.json.id}/status`, { headers }).then((x) =>
      x.text(),
    );
    const keyText = readFileSync(join(sshDir, "id_ed25519"), "utf8");
    const secretLines = keyText.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"));
    assert.ok(secretLines.length > 0);
    for (const [what, text] of [
      ["events", events],
      ["status", status],
      ["node log", captured],
      ["sshd log", sshd.log()],
    ] as const) {
      for (const line of secretLines) assert.ok(!text.includes(line), `the private key reached the ${what}`);
    }
    assert.ok(!status.includes(join(sshDir, "id_ed25519")), "the status names the key file");
    const command = sshCommand(sshDir);
    for (const line of secretLines) assert.ok(!command.includes(line), "the key is in GIT_SSH_COMMAND");
    assert.match(command, /-i '[^']+\/id_ed25519'/);
    assert.match(command, /StrictHostKeyChecking=yes/);
  });
});
