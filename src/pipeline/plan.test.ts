import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { appUuidFromRepo } from "../core/address.js";
import { isTabbifyError } from "../core/errors.js";
import {
  canonicalRepoUrl,
  checkCapabilities,
  imageRef,
  pickBuilder,
  pinnedRef,
  type RosterSupervisor,
  resolveAppUuid,
  resolveTargets,
} from "./plan.js";

const code = (c: string) => (err: unknown) => isTabbifyError(err, c);
const sup = (name: string, ...tags: string[]): RosterSupervisor => ({
  name,
  address: `http://${name}.invalid:8730`,
  ula: `fd5a:1f00:0:${name.length}::1`,
  tags: ["supervisor", ...tags],
});

const dockerOnly = sup("docker-host", "process", "docker");
const builder = sup("zz-builder", "docker", "builder");
const fcHost = sup("fc-host", "firecracker");
const wasmHost = sup("wasm-host", "wasm");

describe("pickBuilder", () => {
  it("takes the hint by name or by host address", () => {
    assert.equal(pickBuilder("docker-host", [builder, dockerOnly]).name, "docker-host");
    assert.equal(pickBuilder(dockerOnly.ula, [builder, dockerOnly]).name, "docker-host");
  });

  it("prefers a builder-tagged supervisor, then a docker-tagged one", () => {
    assert.equal(pickBuilder(undefined, [dockerOnly, builder, fcHost]).name, "zz-builder");
    assert.equal(pickBuilder(undefined, [fcHost, dockerOnly, sup("a-docker", "docker")]).name, "a-docker");
  });

  it("is unresolvable when nothing can build or the hint names nobody", () => {
    assert.throws(() => pickBuilder(undefined, [fcHost, wasmHost]), code("UNRESOLVABLE_BUILDER"));
    assert.throws(() => pickBuilder(undefined, []), code("UNRESOLVABLE_BUILDER"));
    assert.throws(
      () => pickBuilder("ghost", [builder]),
      (err) => code("UNRESOLVABLE_BUILDER")(err) && /ghost/.test(String(err)),
    );
    assert.throws(() => pickBuilder("fc-host", [fcHost, builder]), /cannot build/);
  });
});

describe("resolveTargets", () => {
  const roster = [fcHost, dockerOnly, builder];

  it("uses the request's targets first, env from [env] and the matching [[deploy]]", () => {
    const targets = resolveTargets(
      [{ supervisor: "fc-host", runtime: "firecracker" }],
      [{ supervisor: "fc-host", env: { MODE: "edge" } }],
      roster,
      { MODE: "prod", GREETING: "hi" },
    );
    assert.deepEqual(targets, [
      { supervisor: "fc-host", runtime: "firecracker", env: { MODE: "edge", GREETING: "hi" } },
    ]);
  });

  it("falls back to [[deploy]], docker when no runtime is named", () => {
    assert.deepEqual(resolveTargets(undefined, [{ supervisor: "docker-host", env: {} }], roster), [
      { supervisor: "docker-host", runtime: "docker", env: {} },
    ]);
    assert.deepEqual(
      resolveTargets([], [{ supervisor: "fc-host", runtime: "firecracker", env: {} }], roster),
      [{ supervisor: "fc-host", runtime: "firecracker", env: {} }],
    );
  });

  it("without [[deploy]] picks one docker-capable supervisor running docker", () => {
    assert.deepEqual(resolveTargets(undefined, [], roster, { A: "1" }), [
      { supervisor: "docker-host", runtime: "docker", env: { A: "1" } },
    ]);
    assert.throws(() => resolveTargets(undefined, [], [fcHost]), code("TARGETS_UNRESOLVABLE"));
  });

  it("rejects unknown runtimes and a supervisor named twice", () => {
    assert.throws(
      () => resolveTargets([{ supervisor: "x", runtime: "kvm" as "docker" }], [], roster),
      code("DEPLOY_REQUEST_INVALID"),
    );
    assert.throws(
      () => resolveTargets([{ supervisor: "x" }, { supervisor: "x", runtime: "docker" }], [], roster),
      code("DEPLOY_REQUEST_INVALID"),
    );
  });
});

describe("checkCapabilities", () => {
  const roster = [fcHost, dockerOnly, wasmHost];

  it("passes targets whose supervisor advertises the runtime", () => {
    checkCapabilities(
      [
        { supervisor: "fc-host", runtime: "firecracker", env: {} },
        { supervisor: "docker-host", runtime: "docker", env: {} },
      ],
      roster,
    );
  });

  it("aborts on firecracker asked of a docker-only host, naming it", () => {
    assert.throws(
      () =>
        checkCapabilities(
          [
            { supervisor: "fc-host", runtime: "firecracker", env: {} },
            { supervisor: "docker-host", runtime: "firecracker", env: {} },
          ],
          roster,
        ),
      (err) =>
        code("CAPABILITY_MISMATCH")(err) &&
        /docker-host cannot run firecracker \(it offers: process, docker\)/.test((err as Error).message) &&
        !/fc-host/.test((err as Error).message),
    );
  });

  it("aborts on supervisors missing from the roster and runtimes that cannot run an image", () => {
    assert.throws(
      () => checkCapabilities([{ supervisor: "ghost", runtime: "docker", env: {} }], roster),
      /ghost is not on the roster/,
    );
    assert.throws(
      () => checkCapabilities([{ supervisor: "wasm-host", runtime: "wasm", env: {} }], roster),
      /runtime wasm cannot run a container image/,
    );
  });
});

describe("resolveAppUuid", () => {
  const repo = "https://github.com/tabbify-io/hello-deploy";

  it("takes the request's uuid, then [app].id, then uuid v5 of the repo URL", () => {
    const body = "0191E7C2-1111-7222-8333-444455556666";
    const toml = "0191e7c2-2222-7222-8333-444455556666";
    assert.equal(resolveAppUuid(body, toml, repo), body.toLowerCase());
    assert.equal(resolveAppUuid(undefined, toml, repo), toml);
    assert.equal(resolveAppUuid(undefined, undefined, repo), appUuidFromRepo(repo));
    assert.throws(() => resolveAppUuid("nope", undefined, repo), code("UUID_INVALID"));
  });

  it("gives a repo the same uuid whether it arrives as clone_url or repo_url", () => {
    const viaApi = resolveAppUuid(undefined, undefined, repo);
    for (const spelling of [
      `${repo}.git`,
      `${repo}/`,
      "HTTPS://GitHub.com/tabbify-io/hello-deploy.git",
      "https://x-access-token:secret@github.com/tabbify-io/hello-deploy.git",
    ]) {
      assert.equal(resolveAppUuid(undefined, undefined, spelling), viaApi, spelling);
    }
    assert.notEqual(resolveAppUuid(undefined, undefined, "https://github.com/tabbify-io/other"), viaApi);
    assert.equal(canonicalRepoUrl("git@github.com:o/r.git"), "git@github.com:o/r");
  });
});

describe("imageRef", () => {
  const sha = "6113728F27AE82C7B1A177C8D03F9E96E0ADF246";
  it("is <registry>/<tenant lowercased>/<app_uuid>:<sha>", () => {
    assert.equal(
      imageRef("[fd5a:1f00:0:3::1]:5000", "Tabbify-IO", "0191E7C2-1111-7222-8333-444455556666", sha),
      "[fd5a:1f00:0:3::1]:5000/tabbify-io/0191e7c2-1111-7222-8333-444455556666:6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
  });

  it("refuses short shas, bad tenants and registries with a scheme", () => {
    const uuid = "0191e7c2-1111-7222-8333-444455556666";
    assert.throws(() => imageRef("127.0.0.1:5000", "t", uuid, "main"), code("IMAGE_REF_INVALID"));
    assert.throws(() => imageRef("127.0.0.1:5000", "bad/tenant", uuid, sha), code("IMAGE_REF_INVALID"));
    assert.throws(() => imageRef("http://127.0.0.1:5000", "t", uuid, sha), code("IMAGE_REF_INVALID"));
  });
});

describe("pinnedRef", () => {
  const digest = `sha256:${"ab".repeat(32)}`;
  it("turns a tag into repository@digest, a registry port kept", () => {
    assert.equal(pinnedRef("127.0.0.1:5000/t/app:abc", digest), `127.0.0.1:5000/t/app@${digest}`);
    assert.equal(pinnedRef("127.0.0.1:5000/t/app", digest), `127.0.0.1:5000/t/app@${digest}`);
    assert.equal(pinnedRef(`127.0.0.1:5000/t/app@${digest}`, digest), `127.0.0.1:5000/t/app@${digest}`);
  });
  it("refuses REF_NOT_PINNED without a well-formed digest, or when it contradicts the ref's", () => {
    const notPinned = (e: unknown) => isTabbifyError(e, "REF_NOT_PINNED");
    assert.throws(() => pinnedRef("registry/t/app:latest", ""), notPinned);
    assert.throws(() => pinnedRef("registry/t/app:latest", "latest"), notPinned);
    assert.throws(() => pinnedRef("registry/t/app:latest", "sha256:abc"), notPinned);
    assert.throws(() => pinnedRef(`registry/t/app@sha256:${"cd".repeat(32)}`, digest), notPinned);
  });
});
