import assert from "node:assert/strict";
import { test } from "node:test";
import { serveSpecs } from "./auth.js";
import { nodeOptions, nodeSecretEnv } from "./node.js";
import { registryOptions } from "./registry.js";
import { type RoleName, roleEnv, roleEnvNames } from "./role-env.js";
import { specs as supervisorOptions } from "./supervisor.js";

test("each role keeps the env twins of its own flags and the basics", () => {
  const own: Record<RoleName, string[]> = {
    auth: serveSpecs.flatMap((o) => (o.env ? [o.env] : [])),
    registry: registryOptions.flatMap((o) => (o.env ? [o.env] : [])),
    node: [...nodeOptions.flatMap((o) => (o.env ? [o.env] : [])), ...nodeSecretEnv],
    supervisor: supervisorOptions.flatMap((o) => (o.env ? [o.env] : [])),
  };
  for (const [role, names] of Object.entries(own) as [RoleName, string[]][]) {
    for (const name of [...names, "PATH", "HOME", "TMPDIR"]) {
      assert.ok(roleEnvNames[role].includes(name), `${role} reads ${name}`);
    }
  }
});

test("a secret reaches only the role that reads it; unrelated variables reach none", () => {
  const from: NodeJS.ProcessEnv = {
    PATH: "/usr/bin",
    GITHUB_APP_PRIVATE_KEY: "pem",
    GITHUB_WEBHOOK_SECRET: "hook",
    FORGEJO_TOKEN: "forgejo",
    TABBIFY_SUPERVISOR_KEY: "sup",
    TABBIFY_NODE_KEY: "node",
    AWS_SECRET_ACCESS_KEY: "aws",
    DATABASE_PASSWORD: "db",
    SSH_AUTH_SOCK: "/tmp/agent",
  };
  const node = roleEnv("node", from);
  assert.equal(node.GITHUB_APP_PRIVATE_KEY, "pem");
  assert.equal(node.TABBIFY_SUPERVISOR_KEY, "sup");
  assert.equal(node.AWS_SECRET_ACCESS_KEY, undefined);
  for (const role of ["auth", "registry", "supervisor"] as const) {
    const env = roleEnv(role, from);
    assert.equal(env.PATH, "/usr/bin");
    for (const name of [
      "GITHUB_APP_PRIVATE_KEY",
      "GITHUB_WEBHOOK_SECRET",
      "FORGEJO_TOKEN",
      "TABBIFY_SUPERVISOR_KEY",
    ]) {
      assert.equal(env[name], undefined, `${role} got ${name}`);
    }
  }
  assert.equal(roleEnv("auth", from).TABBIFY_NODE_KEY, undefined);
  assert.equal(roleEnv("registry", from).TABBIFY_NODE_KEY, undefined);
  for (const role of ["auth", "registry", "node", "supervisor"] as const) {
    assert.equal(roleEnv(role, from).DATABASE_PASSWORD, undefined);
    assert.equal(roleEnv(role, from).SSH_AUTH_SOCK, undefined);
  }
  assert.equal(roleEnv("auth", from, { EXTRA: "set by up" }).EXTRA, "set by up");
});
