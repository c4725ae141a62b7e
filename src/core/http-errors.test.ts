import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TabbifyError } from "./errors.js";
import { frameworkClientStatus, toHttpError } from "./http-errors.js";

const table = { APP_NOT_FOUND: 404, APP_LOCKED: 409 };
const frameworkError = (statusCode: number) => Object.assign(new Error("framework says no"), { statusCode });

describe("toHttpError", () => {
  it("maps a listed code to its status, with the message and code", () => {
    assert.deepEqual(toHttpError(new TabbifyError("APP_LOCKED", "app is locked"), table), {
      status: 409,
      body: { error: "app is locked", code: "APP_LOCKED" },
    });
  });

  it("keeps a framework 4xx, naming its code", () => {
    assert.deepEqual(toHttpError(frameworkError(413), table).body.code, "PAYLOAD_TOO_LARGE");
    assert.deepEqual(toHttpError(frameworkError(415), table).body.code, "UNSUPPORTED_MEDIA_TYPE");
    assert.deepEqual(toHttpError(frameworkError(400), table), {
      status: 400,
      body: { error: "framework says no", code: "BAD_REQUEST" },
    });
  });

  it("makes anything else a 500 that hides the message", () => {
    for (const err of [
      new TabbifyError("NOT_IN_TABLE", "secret detail"),
      new Error("secret detail"),
      frameworkError(502),
      "a string",
      null,
    ]) {
      const mapped = toHttpError(err, table);
      assert.equal(mapped.status, 500);
      assert.ok(!mapped.body.error.includes("secret"), JSON.stringify(mapped));
    }
  });

  it("reads a framework status only when it is a 4xx number", () => {
    assert.equal(frameworkClientStatus({ statusCode: "400" }), undefined);
    assert.equal(frameworkClientStatus(undefined), undefined);
    assert.equal(frameworkClientStatus({ statusCode: 404 }), 404);
  });
});
