/**
 * Device login (RFC 8628) end to end and under attack: the compiled tcli waits on a code while
 * another tcli (logged in) approves or refuses it, against a real node that mints tenant tokens.
 * Attacks: guessing user codes, polling too fast, replaying a redeemed device code, approving
 * without a login, with a forged token, or for another tenant.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { sleep } from "../../src/core/sleep.js";
import { NODE_KEY, runTcli, spawnTcli, startTcliStack, type TcliStack } from "../support/tcli-node.js";
import { tempDir } from "../support/tools.js";

const GRANT = "urn:ietf:params:oauth:grant-type:device_code";

interface Grant {
  device_code: string;
  user_code: string;
  interval: number;
  verification_uri: string;
}

/** Starts `tcli login --device` and resolves with the code it shows, and its end. */
function waitingLogin(home: string, nodeUrl: string, extra: string[] = []) {
  const child = spawnTcli(["login", "--device", "--node", nodeUrl, ...extra], { home });
  child.stdin.end();
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  const code = new Promise<string>((resolve, reject) => {
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
      const m = /approve this code: ([A-Z]{4}-[A-Z]{4})/.exec(stderr);
      if (m) resolve(m[1] as string);
    });
    child.on("close", () => reject(new Error(`tcli ended before showing a code: ${stderr}`)));
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (exit) => resolve({ code: exit, stdout, stderr })),
  );
  return { code, done };
}

describe("device login (RFC 8628)", () => {
  let stack: TcliStack;
  let admin: { path: string; remove(): Promise<void> };
  let device: { path: string; remove(): Promise<void> };
  const node = () => ["--node", stack.node.url];
  const post = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${stack.node.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const newGrant = async () => (await post("/v1/auth/device", {})).body as unknown as Grant;

  before(async () => {
    stack = await startTcliStack();
    admin = await tempDir("tcli-device-admin");
    device = await tempDir("tcli-device-new");
    const login = await runTcli(["login", "--token-stdin", ...node()], { home: admin.path, stdin: NODE_KEY });
    assert.equal(login.code, 0, login.stderr);
  });
  after(async () => {
    await stack?.close();
    await admin?.remove();
    await device?.remove();
  });

  it("logs a new terminal in once a logged-in one approves its code", async () => {
    const waiting = waitingLogin(device.path, stack.node.url);
    const userCode = await waiting.code;
    const approve = await runTcli(
      ["login", "approve", userCode.toLowerCase(), "--tenant", "acme", ...node()],
      {
        home: admin.path,
      },
    );
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, new RegExp(`approved ${userCode.toLowerCase()}: .*tenant acme`));
    const end = await waiting.done;
    assert.equal(end.code, 0, end.stderr);
    assert.match(end.stdout, /logged in to http:.* \(the token sees 1 app\)/);
    const saved = JSON.parse(await readFile(join(device.path, ".tabbify", "credentials"), "utf8")) as {
      nodes: Record<string, { token: string }>;
    };
    const token = saved.nodes[stack.node.url]?.token ?? "";
    assert.equal(token.split(".").length, 3, "a tenant JWT, never the node key");
    assert.notEqual(token, NODE_KEY);
    const apps = await runTcli(["apps", "--json", ...node()], { home: device.path });
    assert.deepEqual(
      (JSON.parse(apps.stdout) as Array<{ name: string }>).map((a) => a.name),
      ["acme-web"],
    );
    // The approval is in the audit chain, without the code or the token.
    const audit = await fetch(`${stack.node.url}/api/v1/audit?limit=100`, {
      headers: { authorization: `Bearer ${NODE_KEY}` },
    });
    const text = await audit.text();
    assert.equal(audit.status, 200, text);
    assert.match(text, /auth\.device\.approve/);
    assert.ok(!text.includes(token) && !text.includes(userCode));
  });

  it("a tenant token approves for its own tenant only; the node key must name one", async () => {
    const waiting = waitingLogin(device.path, stack.node.url);
    const userCode = await waiting.code;
    const other = await post(
      "/v1/auth/device/approve",
      { user_code: userCode, tenant: "globex" },
      stack.acmeToken,
    );
    assert.equal(other.status, 403);
    const noTenant = await post("/v1/auth/device/approve", { user_code: userCode }, NODE_KEY);
    assert.equal(noTenant.status, 400);
    assert.match(String(noTenant.body.error), /--tenant/);
    const own = await post("/v1/auth/device/approve", { user_code: userCode }, stack.acmeToken);
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.deepEqual([own.body.tenant, own.body.subject], ["acme", "dev"]);
    assert.equal((await waiting.done).code, 0);
  });

  it("a refused code ends the waiting login with exit 1 and saves nothing new", async () => {
    const fresh = await tempDir("tcli-device-refused");
    try {
      const waiting = waitingLogin(fresh.path, stack.node.url);
      const userCode = await waiting.code;
      const deny = await runTcli(["login", "deny", userCode, ...node()], { home: admin.path });
      assert.equal(deny.code, 0, deny.stderr);
      const end = await waiting.done;
      assert.equal(end.code, 1);
      assert.match(end.stderr, /was refused by an approver/);
      await assert.rejects(readFile(join(fresh.path, ".tabbify", "credentials")));
    } finally {
      await fresh.remove();
    }
  });

  it("refuses approvals without a login, with a wrong token, or a forged tenant token", async () => {
    const grant = await newGrant();
    assert.equal(
      (await post("/v1/auth/device/approve", { user_code: grant.user_code, tenant: "acme" })).status,
      401,
    );
    assert.equal(
      (await post("/v1/auth/device/approve", { user_code: grant.user_code, tenant: "acme" }, "nope")).status,
      401,
    );
    // A token with a forged signature is no tenant token.
    const [h, p] = stack.acmeToken.split(".");
    const forged = `${h}.${p}.${"A".repeat(86)}`;
    assert.equal((await post("/v1/auth/device/approve", { user_code: grant.user_code }, forged)).status, 401);
    const poll = await post("/v1/auth/device/token", { grant_type: GRANT, device_code: grant.device_code });
    assert.equal(poll.body.error, "authorization_pending");
  });

  it("stops a caller guessing user codes after 5 misses, even when the sixth is right", async () => {
    const grant = await newGrant();
    const guesser = stack.globexToken;
    for (let i = 0; i < 5; i += 1) {
      const miss = await post("/v1/auth/device/approve", { user_code: "BBBB-BBBB" }, guesser);
      assert.equal(miss.status, 404);
      assert.equal(miss.body.code, "USER_CODE_NOT_FOUND");
    }
    const right = await post("/v1/auth/device/approve", { user_code: grant.user_code }, guesser);
    assert.equal(right.status, 429);
    assert.equal(right.body.code, "TOO_MANY_ATTEMPTS");
    const poll = await post("/v1/auth/device/token", { grant_type: GRANT, device_code: grant.device_code });
    assert.equal(poll.body.error, "authorization_pending", "the guesser's hit approved nothing");
  });

  it("answers slow_down to polls faster than the interval, and grows it by 5 s", async () => {
    const grant = await newGrant();
    assert.equal(grant.interval, 1);
    const first = await post("/v1/auth/device/token", { grant_type: GRANT, device_code: grant.device_code });
    assert.equal(first.status, 400);
    assert.equal(first.body.error, "authorization_pending");
    const fast = await post("/v1/auth/device/token", { grant_type: GRANT, device_code: grant.device_code });
    assert.equal(fast.body.error, "slow_down");
    assert.equal(fast.body.interval, 6);
    await sleep(1500);
    const stillFast = await post("/v1/auth/device/token", {
      grant_type: GRANT,
      device_code: grant.device_code,
    });
    assert.equal(stillFast.body.error, "slow_down", "1.5 s is under the grown 6 s interval");
    assert.equal(stillFast.body.interval, 11);
  });

  it("hands a token out once: a replayed device code is invalid_grant, the code is spent", async () => {
    const grant = await newGrant();
    const ok = await post(
      "/v1/auth/device/approve",
      { user_code: grant.user_code, tenant: "acme" },
      NODE_KEY,
    );
    assert.equal(ok.status, 200);
    await sleep(1100);
    const form = await fetch(`${stack.node.url}/v1/auth/device/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: GRANT, device_code: grant.device_code }).toString(),
    });
    assert.equal(form.status, 200, "the RFC's form encoding is accepted");
    assert.equal(form.headers.get("cache-control"), "no-store");
    const token = (await form.json()) as { access_token: string; token_type: string };
    assert.equal(token.token_type, "Bearer");
    await sleep(1100);
    const replay = await post("/v1/auth/device/token", { grant_type: GRANT, device_code: grant.device_code });
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, "invalid_grant");
    const again = await post(
      "/v1/auth/device/approve",
      { user_code: grant.user_code, tenant: "acme" },
      NODE_KEY,
    );
    assert.equal(again.status, 404);
    const wrongGrant = await post("/v1/auth/device/token", { grant_type: "password", device_code: "x" });
    assert.equal(wrongGrant.body.error, "unsupported_grant_type");
  });
});
