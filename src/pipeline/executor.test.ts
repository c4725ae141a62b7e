import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deriveAppUla, environmentUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import {
  type BuildRequest,
  type BuildResult,
  type DeployEvent,
  DeployExecutor,
  followDeploy,
  MemoryDeployStore,
  type PipelineDeps,
  type SupervisorAppStatus,
  type SupervisorClient,
  type SupervisorDeployReply,
  type SupervisorDeployRequest,
} from "./executor.js";
import type { DeployRequest, RosterSupervisor } from "./plan.js";

// The supervisor, roster, registry and GitHub are separate components wired in by the node; here
// they are stood in for by small in-test implementations of the executor's interfaces.

const SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const DIGEST = `sha256:${"ab".repeat(32)}`;
const REGISTRY = "127.0.0.1:5000";
const CLONE_TOKEN = "ghs_clone-token-value-123";
const PUSH_TOKEN = "registry-push-token-value-456";
const APP_UUID = "0191e7c2-1111-7222-8333-444455556666";

class StandInSupervisor implements SupervisorClient {
  builds: BuildRequest[] = [];
  deploys: SupervisorDeployRequest[] = [];
  running: string | undefined;
  unreachable = false;
  buildFailure: string | undefined;
  reportedDigest: string | undefined;
  buildLines = ["Step 1/2 : FROM scratch", "Step 2/2 : COPY app /app"];

  constructor(readonly name: string) {}

  async build(request: BuildRequest, onLog: (line: string) => void): Promise<BuildResult> {
    this.builds.push(request);
    for (const line of this.buildLines) onLog(line);
    if (this.buildFailure !== undefined) {
      onLog(`error: ${this.buildFailure}`);
      throw new TabbifyError("BUILD_FAILED", `docker build failed: ${this.buildFailure}`);
    }
    return { image_ref: `${request.image_repository}:${SHA}`, digest: DIGEST, commit_sha: SHA };
  }

  async deploy(appUuid: string, request: SupervisorDeployRequest): Promise<SupervisorDeployReply> {
    if (this.unreachable) {
      // Echo a credential, as a careless peer might: the executor must scrub it.
      throw new TabbifyError(
        "SUPERVISOR_UNREACHABLE",
        `supervisor ${this.name} unreachable (connect ECONNREFUSED) token=${request.registry_token}`,
      );
    }
    this.deploys.push(request);
    this.running = request.digest;
    return { state: "running", app_ula: deriveAppUla(appUuid) };
  }

  migrations: { appUuid: string; command: string[]; ref: string | undefined; deploysBefore: number }[] = [];
  migrationExit = 0;

  async migrate(appUuid: string, request: SupervisorDeployRequest, command: string[]) {
    this.migrations.push({ appUuid, command, ref: request.ref, deploysBefore: this.deploys.length });
    return {
      exit_code: this.migrationExit,
      signal: null,
      timed_out: false,
      duration_ms: 5,
      // A migration echoing the pull credential: the executor must scrub it.
      log_tail: ["applying 0001_init", `relation "users" already exists (token ${request.registry_token})`],
    };
  }

  async app(appUuid: string): Promise<SupervisorAppStatus | null> {
    if (this.running === undefined) return null;
    return { state: "running", app_ula: deriveAppUla(appUuid), digest: this.reportedDigest ?? this.running };
  }
}

interface Harness {
  deps: PipelineDeps;
  store: MemoryDeployStore;
  supervisors: Map<string, StandInSupervisor>;
  roster: RosterSupervisor[];
  manifest: string | null;
  probes: string[];
}

function harness(rosterSpec: Record<string, string[]>, manifest: string | null): Harness {
  const store = new MemoryDeployStore();
  const roster = Object.entries(rosterSpec).map(([name, tags]) => ({
    name,
    address: `http://${name}.invalid`,
    tags: ["supervisor", ...tags],
  }));
  const supervisors = new Map(roster.map((s) => [s.name, new StandInSupervisor(s.name)]));
  const h: Harness = {
    store,
    supervisors,
    roster,
    manifest,
    probes: [],
    deps: undefined as unknown as PipelineDeps,
  };
  h.deps = {
    store,
    roster: { supervisors: async () => h.roster },
    supervisorClient: (s) => supervisors.get(s.name)!,
    manifests: {
      fetchManifest: async (_repo, ref, token) => {
        assert.equal(ref, SHA);
        assert.equal(token, CLONE_TOKEN);
        return h.manifest;
      },
    },
    tokens: { installationToken: async () => ({ token: CLONE_TOKEN, expires_at: "2030-01-01T00:00:00Z" }) },
    registry: {
      host: REGISTRY,
      pushToken: async () => PUSH_TOKEN,
      pullToken: async () => PUSH_TOKEN,
    },
    probeApp: async (uuid) => {
      h.probes.push(uuid);
    },
  };
  return h;
}

const pushRequest = (extra: Partial<DeployRequest> = {}): DeployRequest => ({
  trigger: "github",
  repoUrl: "https://github.com/Tabbify-IO/hello-deploy.git",
  ref: SHA,
  sha: SHA,
  tenant: "Tabbify-IO",
  installationId: 42,
  ...extra,
});

const TOML = `[app]\nid = "${APP_UUID}"\nname = "hello"\n`;
const TWO_TARGETS = `${TOML}\n[[deploy]]\nsupervisor = "alpha"\n\n[[deploy]]\nsupervisor = "beta"\n`;

const stepTrail = (events: DeployEvent[]) =>
  events.filter((e) => e.type !== "log").map((e) => `${e.step}:${e.type}`);

describe("DeployExecutor", () => {
  const MIGRATING = `${TOML}\n[deploy]\nmigrate = ["./migrate", "up"]\n`;

  it("runs [deploy] migrate once on the first target, in the built image, before fan_out", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"] }, MIGRATING);
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "succeeded", JSON.stringify(record.error));
    const alpha = h.supervisors.get("alpha")!;
    assert.deepEqual(alpha.migrations, [
      {
        appUuid: APP_UUID,
        command: ["./migrate", "up"],
        ref: `${REGISTRY}/tabbify-io/${APP_UUID}@${DIGEST}`,
        deploysBefore: 0,
      },
    ]);
    assert.equal(alpha.deploys.length, 1);
  });

  it("a failing migration fails the deploy at step migrate, tail in its events, no target switched", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"] }, MIGRATING);
    h.supervisors.get("alpha")!.migrationExit = 2;
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "failed");
    assert.equal(record.error?.step, "migrate");
    assert.equal(record.error?.code, "MIGRATION_FAILED");
    assert.equal(h.supervisors.get("alpha")!.deploys.length, 0, "no target was asked to switch");
    const logs = record.events.filter((e) => e.step === "migrate" && e.type === "log").map((e) => e.message);
    assert.ok(logs.includes("applying 0001_init"));
    assert.ok(!JSON.stringify(record).includes(PUSH_TOKEN), "the pull token is scrubbed from the tail");
    assert.ok(!record.events.some((e) => e.step === "fan_out"));
  });

  it("runs every step in order and records one result per target", async () => {
    const h = harness(
      { builder: ["docker", "builder"], alpha: ["docker"] },
      `${TOML}[[deploy]]\nsupervisor = "alpha"\n`,
    );
    const record = await new DeployExecutor(h.deps).run(pushRequest());

    assert.equal(record.status, "succeeded");
    assert.deepEqual(stepTrail(record.events), [
      ...[
        "mint_token",
        "fetch_manifest",
        "pick_builder",
        "capability_check",
        "build_and_push",
        "verify_signature",
        "acquire_lock",
        "migrate",
        "fan_out",
        "verify",
      ].flatMap((s) => [`${s}:step_started`, `${s}:step_finished`]),
      "deploy:deploy_finished",
    ]);
    assert.deepEqual(
      record.events.map((e) => e.seq),
      record.events.map((_, i) => i + 1),
    );
    const ref = `${REGISTRY}/tabbify-io/${APP_UUID}:${SHA}`;
    assert.equal(record.image_ref, ref);
    assert.equal(record.digest, DIGEST);
    assert.equal(record.app_uuid, APP_UUID);
    assert.deepEqual(record.results, [
      {
        supervisor: "alpha",
        runtime: "docker",
        success: true,
        app_ula: deriveAppUla(APP_UUID),
        digest: DIGEST,
      },
    ]);
    const build = h.supervisors.get("builder")!.builds[0]!;
    assert.equal(build.ref, SHA);
    assert.equal(build.clone_token, CLONE_TOKEN);
    assert.equal(build.image_repository, `${REGISTRY}/tabbify-io/${APP_UUID}`);
    // Targets get the image by digest, never by its tag.
    assert.deepEqual(
      h.supervisors.get("alpha")!.deploys[0]!.ref,
      `${ref.slice(0, ref.lastIndexOf(":"))}@${DIGEST}`,
    );
    assert.deepEqual(h.probes, [APP_UUID]);
    const buildLogs = record.events
      .filter((e) => e.type === "log" && e.step === "build_and_push")
      .map((e) => e.message);
    assert.deepEqual(buildLogs, ["Step 1/2 : FROM scratch", "Step 2/2 : COPY app /app"]);
  });

  it("aborts on a capability mismatch before any build, naming the target", async () => {
    const h = harness(
      { builder: ["docker", "builder"], alpha: ["docker"] },
      `${TOML}[[deploy]]\nsupervisor = "alpha"\nruntime = "firecracker"\n`,
    );
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "failed");
    assert.equal(record.error?.code, "CAPABILITY_MISMATCH");
    assert.equal(record.error?.step, "capability_check");
    assert.match(record.error?.message ?? "", /alpha cannot run firecracker/);
    assert.equal(h.supervisors.get("builder")!.builds.length, 0);
    assert.deepEqual(record.results, []);
    assert.deepEqual(stepTrail(record.events).slice(-2), [
      "capability_check:step_failed",
      "deploy:deploy_failed",
    ]);
  });

  it("keeps the other target deployed when one is unreachable, and reports it in results", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"], beta: ["docker"] }, TWO_TARGETS);
    h.supervisors.get("beta")!.unreachable = true;
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "succeeded", "per-target failures do not fail the deploy");
    const [alpha, beta] = record.results;
    assert.equal(alpha?.success, true);
    assert.equal(beta?.success, false);
    assert.match(beta?.error ?? "", /beta unreachable/);
    assert.equal(h.supervisors.get("alpha")!.running, DIGEST);
  });

  it("fails a target whose runner runs another digest", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"], beta: ["docker"] }, TWO_TARGETS);
    h.supervisors.get("beta")!.reportedDigest = `sha256:${"cd".repeat(32)}`;
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.deepEqual(
      record.results.map((r) => [r.supervisor, r.success]),
      [
        ["alpha", true],
        ["beta", false],
      ],
    );
    assert.match(record.results[1]?.error ?? "", /^verify: runner runs sha256:cdcd.*, expected sha256:abab/);
  });

  it("fails every target when /app/<uuid> does not answer", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"] }, TOML);
    h.deps.probeApp = async () => {
      throw new Error("502 from the proxy");
    };
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.results[0]?.success, false);
    assert.match(record.results[0]?.error ?? "", /does not answer: 502 from the proxy/);
  });

  it("records a failing build's log lines and stops there", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"] }, TOML);
    h.supervisors.get("builder")!.buildFailure = "COPY failed: file not found";
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "failed");
    assert.equal(record.error?.code, "BUILD_FAILED");
    assert.equal(record.error?.step, "build_and_push");
    const logs = record.events.filter((e) => e.type === "log").map((e) => e.message);
    assert.ok(logs.includes("error: COPY failed: file not found"));
    assert.equal(h.supervisors.get("alpha")!.deploys.length, 0);
  });

  it("fails with the file's place when tabbify.toml is invalid, and says when it is missing", async () => {
    const bad = harness({ builder: ["docker"] }, "[app]\nname = 5\n");
    const invalid = await new DeployExecutor(bad.deps).run(pushRequest());
    assert.equal(invalid.error?.code, "TABBIFY_TOML_INVALID");
    assert.equal(invalid.error?.message, "tabbify.toml:2:8: app.name must be a string");

    const none = harness({ builder: ["docker"] }, null);
    const missing = await new DeployExecutor(none.deps).run(pushRequest());
    assert.equal(missing.error?.code, "TABBIFY_TOML_MISSING");
    assert.match(missing.error?.message ?? "", /tabbify\.toml: not found/);
  });

  it("treats an unresolvable builder and a missing registry as fatal", async () => {
    const noBuilder = harness({ fc: ["firecracker"] }, TOML);
    const r1 = await new DeployExecutor(noBuilder.deps).run(pushRequest());
    assert.equal(r1.error?.code, "UNRESOLVABLE_BUILDER");

    const noRegistry = harness({ builder: ["docker"] }, TOML);
    delete noRegistry.deps.registry;
    const r2 = await new DeployExecutor(noRegistry.deps).run(pushRequest());
    assert.equal(r2.error?.code, "REGISTRY_MISSING");
    assert.equal(noRegistry.supervisors.get("builder")!.builds.length, 0);
  });

  it("falls back to one docker supervisor when tabbify.toml has no [[deploy]]", async () => {
    const h = harness({ fc: ["firecracker"], dock: ["docker"] }, TOML);
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.deepEqual(
      record.results.map((r) => [r.supervisor, r.runtime, r.success]),
      [["dock", "docker", true]],
    );
  });

  it("clones anonymously without an installation or without an App", async () => {
    const h = harness({ dock: ["docker"] }, TOML);
    h.deps.manifests = { fetchManifest: async (_r, _ref, token) => (token === undefined ? TOML : null) };
    const noInstallation = await new DeployExecutor(h.deps).run(pushRequest({ installationId: undefined }));
    assert.equal(noInstallation.status, "succeeded");
    delete h.deps.tokens;
    const noApp = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(noApp.status, "succeeded");
    assert.equal(h.supervisors.get("dock")!.builds.at(-1)!.clone_token, undefined);
  });

  it("looks the installation up for a request that names none, and uses a forge's standing token", async () => {
    const h = harness({ dock: ["docker"] }, TOML);
    const asked: string[] = [];
    h.deps.tokens = {
      installationToken: async (id) => {
        assert.equal(id, 77);
        return { token: CLONE_TOKEN, expires_at: "2030-01-01T00:00:00Z" };
      },
      installationFor: async (repoUrl) => {
        asked.push(repoUrl);
        return 77;
      },
    };
    const api = await new DeployExecutor(h.deps).run(
      pushRequest({ trigger: "api", installationId: undefined }),
    );
    assert.equal(api.status, "succeeded", JSON.stringify(api.error));
    assert.deepEqual(asked, ["https://github.com/Tabbify-IO/hello-deploy.git"]);
    assert.match(
      api.events.find((e) => e.step === "mint_token" && e.type === "step_finished")!.message!,
      /installation 77/,
    );
    assert.equal(h.supervisors.get("dock")!.builds.at(-1)!.clone_token, CLONE_TOKEN);

    h.deps.tokens = { ...h.deps.tokens, installationFor: async () => undefined };
    h.deps.manifests = { fetchManifest: async (_r, _ref, token) => (token === undefined ? TOML : null) };
    const notInstalled = await new DeployExecutor(h.deps).run(pushRequest({ installationId: undefined }));
    assert.equal(notInstalled.status, "succeeded");
    assert.equal(h.supervisors.get("dock")!.builds.at(-1)!.clone_token, undefined);

    delete h.deps.tokens;
    h.deps.accessToken = "forgejo-standing-token";
    h.deps.manifests = {
      fetchManifest: async (_r, _ref, token) => (token === "forgejo-standing-token" ? TOML : null),
    };
    const forgejo = await new DeployExecutor(h.deps).run(
      pushRequest({ trigger: "forgejo", installationId: undefined }),
    );
    assert.equal(forgejo.status, "succeeded", JSON.stringify(forgejo.error));
    assert.equal(h.supervisors.get("dock")!.builds.at(-1)!.clone_token, "forgejo-standing-token");
    assert.ok(!JSON.stringify(forgejo).includes("forgejo-standing-token"), "the token is not recorded");
  });

  it("manifestBranch reads [app].branch at the pushed commit", async () => {
    const h = harness({ dock: ["docker"] }, `${TOML}branch = "release"\n`);
    assert.equal(await new DeployExecutor(h.deps).manifestBranch(pushRequest()), "release");
    h.manifest = TOML;
    assert.equal(await new DeployExecutor(h.deps).manifestBranch(pushRequest()), undefined);
  });

  it("never records a token, even when a peer's error echoes one", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"], beta: ["docker"] }, TWO_TARGETS);
    h.supervisors.get("beta")!.unreachable = true;
    const executor = new DeployExecutor(h.deps);
    const record = await executor.run(
      pushRequest({ repoUrl: `https://x-access-token:${CLONE_TOKEN}@github.com/o/r.git` }),
    );
    const text = JSON.stringify(record);
    assert.ok(!text.includes(CLONE_TOKEN), "clone token recorded");
    assert.ok(!text.includes(PUSH_TOKEN), "registry token recorded");
    assert.match(record.results[1]?.error ?? "", /token=\[redacted\]/);
  });
});

describe("deploy events", () => {
  it("replays events after a seq and then follows live ones to the end", async () => {
    const h = harness({ builder: ["docker", "builder"], alpha: ["docker"] }, TOML);
    let releaseBuild: () => void = () => {};
    const buildGate = new Promise<void>((resolve) => {
      releaseBuild = resolve;
    });
    const sup = h.supervisors.get("builder")!;
    const realBuild = sup.build.bind(sup);
    sup.build = async (req, onLog) => {
      await buildGate;
      return realBuild(req, onLog);
    };
    const executor = new DeployExecutor(h.deps);
    const { id, done } = await executor.start(pushRequest());

    // Wait until the deploy is parked in the build, then subscribe from seq 3.
    while (!(await h.store.get(id))!.events.some((e) => e.step === "build_and_push")) {
      await new Promise((r) => setImmediate(r));
    }
    const seen: DeployEvent[] = [];
    const following = (async () => {
      for await (const event of followDeploy(h.store, id, 3)) seen.push(event);
    })();
    releaseBuild();
    const record = await done;
    await following;

    assert.deepEqual(
      seen.map((e) => e.seq),
      record.events.filter((e) => e.seq > 3).map((e) => e.seq),
    );
    assert.equal(seen.at(-1)?.type, "deploy_finished");
  });

  it("ends a follower at once for a finished deploy, and stops on abort", async () => {
    const h = harness({ dock: ["docker"] }, TOML);
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    const all: DeployEvent[] = [];
    for await (const e of followDeploy(h.store, record.id)) all.push(e);
    assert.equal(all.length, record.events.length);

    await assert.rejects(async () => {
      for await (const _ of followDeploy(h.store, "no-such-deploy")) {
        // nothing
      }
    }, /DEPLOY_NOT_FOUND|unknown/);

    // A running deploy with nothing new: abort ends the loop.
    const gate = harness({ dock: ["docker"] }, TOML);
    gate.deps.roster = { supervisors: () => new Promise(() => {}) };
    const { id } = await new DeployExecutor(gate.deps).start(pushRequest());
    const controller = new AbortController();
    const got: DeployEvent[] = [];
    setTimeout(() => controller.abort(), 50);
    for await (const e of followDeploy(gate.store, id, 0, controller.signal)) got.push(e);
    assert.ok(got.length > 0 && got.every((e) => e.type !== "deploy_finished"));
  });

  it("evicts finished deploys beyond capacity, never running ones", async () => {
    const store = new MemoryDeployStore(2);
    const base = { request: pushRequest(), created_at: "", results: [], events: [] };
    await store.create({ ...base, id: "a", status: "running" });
    await store.create({ ...base, id: "b", status: "succeeded" });
    await store.create({ ...base, id: "c", status: "failed" });
    assert.ok(await store.get("a"));
    assert.equal(await store.get("b"), undefined);
    assert.ok(await store.get("c"));
  });

  it("lands a build in the first [[environments]] entry, on its targets, under its uuid, with its probes", async () => {
    const h = harness(
      { builder: ["docker", "builder"], alpha: ["docker"], beta: ["docker"] },
      `${TOML}
[probes]
healthz = "/healthz"
version = "/version"

[[environments]]
name = "test"
targets = ["beta"]

[[environments]]
name = "prod"
targets = ["alpha"]
`,
    );
    const record = await new DeployExecutor(h.deps).run(pushRequest());
    assert.equal(record.status, "succeeded", JSON.stringify(record.error));
    assert.deepEqual(
      record.results.map((r) => r.supervisor),
      ["beta"],
      "only the first environment's targets",
    );
    assert.equal(h.supervisors.get("alpha")!.deploys.length, 0, "prod is untouched");
    const sent = h.supervisors.get("beta")!.deploys[0]!;
    assert.equal(sent.environment, "test");
    assert.deepEqual(sent.probes, { healthz: "/healthz", version: "/version", expect: [DIGEST] });
    assert.deepEqual(h.probes, [environmentUuid(APP_UUID, "test")], "verified under the test uuid");
    const checked = record.events.find((e) => e.step === "capability_check" && e.type === "step_finished");
    assert.equal(checked?.data?.environment, "test");
  });
});
