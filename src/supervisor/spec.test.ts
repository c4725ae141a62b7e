import assert from "node:assert/strict";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { specFromBody } from "./spec.js";

test("a start body becomes a WorkloadSpec", () => {
  assert.deepEqual(
    specFromBody(
      { runtime: "process", artifact_dir: "/srv/app", command: ["node", "server.js"], env: { A: "1" } },
      { deploy: false },
    ),
    { runtime: "process", artifactDir: "/srv/app", command: ["node", "server.js"], env: { A: "1" } },
  );
  assert.deepEqual(
    specFromBody(
      {
        runtime: "wasm",
        artifact_dir: "/srv/w",
        entry: "app.wasm",
        limits: { timeout_ms: 500, memory_mb: 32 },
      },
      { deploy: false },
    ),
    { runtime: "wasm", artifactDir: "/srv/w", entry: "app.wasm", limits: { timeoutMs: 500, memoryMb: 32 } },
  );
});

test("deploy takes ref as the docker image", () => {
  assert.deepEqual(specFromBody({ runtime: "docker", ref: "127.0.0.1:5000/t/app:abc" }, { deploy: true }), {
    runtime: "docker",
    image: "127.0.0.1:5000/t/app:abc",
  });
  assert.throws(
    () => specFromBody({ runtime: "docker", ref: "x" }, { deploy: false }),
    /unknown field\(s\): ref/,
  );
});

for (const [name, body, code, message] of [
  ["not an object", [1], "SPEC_INVALID", /JSON object/],
  ["no runtime", { command: ["x"] }, "SPEC_INVALID", /runtime is required/],
  ["unknown runtime", { runtime: "firecracker" }, "RUNTIME_UNKNOWN", /unknown runtime "firecracker"/],
  ["unknown field", { runtime: "process", colour: "red" }, "SPEC_INVALID", /colour/],
  ["relative artifact dir", { runtime: "process", artifact_dir: "app" }, "SPEC_INVALID", /absolute/],
  ["command not a list", { runtime: "process", command: "node server.js" }, "SPEC_INVALID", /command/],
  ["env value not a string", { runtime: "process", env: { A: 1 } }, "SPEC_INVALID", /env A/],
  ["bad limits", { runtime: "wasm", limits: { timeout_ms: -1 } }, "SPEC_INVALID", /timeout_ms/],
  ["ref and image differ", { runtime: "docker", ref: "a", image: "b" }, "SPEC_INVALID", /different images/],
] as const) {
  test(`refuses ${name}`, () => {
    assert.throws(
      () => specFromBody(body, { deploy: true }),
      (err: unknown) => isTabbifyError(err, code) && message.test(err.message),
    );
  });
}

test("env values never appear in error messages", () => {
  assert.throws(
    () => specFromBody({ runtime: "process", env: { TOKEN: 12345 } }, { deploy: false }),
    (err: unknown) => isTabbifyError(err) && !err.message.includes("12345"),
  );
});
