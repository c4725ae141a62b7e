import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../src/core/errors.js";
import { SupervisorApi, supervisorRefusal } from "../src/supervisor/client.js";
import { freePort, SupervisorUnderTest } from "./runtime-plane-support.js";

/**
 * The typed supervisor client against a real supervisor: its answers typed by the route schemas,
 * its refusals and silences as TabbifyErrors with stable codes and the supervisor's own words.
 */
describe("the typed supervisor client", () => {
  let supervisor: SupervisorUnderTest;
  before(async () => {
    supervisor = new SupervisorUnderTest();
    await supervisor.start();
  });
  after(async () => {
    await supervisor.cleanup();
  });

  it("lists, and refuses an unknown app with SUPERVISOR_REFUSED carrying the status", async () => {
    const api = new SupervisorApi({ baseUrl: `${supervisor.base}/`, authToken: supervisor.apiKey });
    const listed = await api.list();
    assert.ok(Array.isArray(listed.apps), "GET /v1/apps answers { apps: [...] }");
    const uuid = randomUUID();
    const stop = await api.appOp(uuid, "stop").catch((err: unknown) => err);
    assert.ok(isTabbifyError(stop, "SUPERVISOR_REFUSED"), `stop of an unknown app: ${String(stop)}`);
    const refused = supervisorRefusal(stop);
    assert.ok(refused && refused.status >= 400 && refused.status < 500, `a 4xx: ${JSON.stringify(refused)}`);
    assert.notEqual((stop as Error).message, "", "the supervisor's own error text");
    const logs = await api.logs(uuid, { tail: 10, follow: false }).catch((err: unknown) => err);
    assert.equal(supervisorRefusal(logs)?.status, 404, "no log for an unknown app");
  });

  it("answers 403 to a wrong key, and never puts the key in an error", async () => {
    const wrong = `not-the-key-${randomUUID()}`;
    const err = await new SupervisorApi({ baseUrl: supervisor.base, authToken: wrong })
      .list()
      .catch((e: unknown) => e);
    assert.equal(supervisorRefusal(err)?.status, 403);
    assert.ok(
      !JSON.stringify({ m: (err as Error).message, d: (err as { detail?: unknown }).detail }).includes(wrong),
    );
  });

  it("maps a supervisor that does not answer to SUPERVISOR_UNREACHABLE", async () => {
    const port = await freePort();
    const err = await new SupervisorApi({ baseUrl: `http://127.0.0.1:${port}`, authToken: "k" })
      .describe(randomUUID(), { timeoutMs: 5_000 })
      .catch((e: unknown) => e);
    assert.ok(isTabbifyError(err, "SUPERVISOR_UNREACHABLE"), String(err));
    assert.match((err as Error).message, new RegExp(`127\\.0\\.0\\.1:${port} unreachable`));
  });
});
