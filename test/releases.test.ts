// Releases end to end (issue 11) with the real auth service, registry (auth on), node, a
// `tabbify supervisor --builder` with its runners, dockerd and a git double: two builds record two
// releases (each pushed as an OCI referrer of its image), rollback swaps prod back to the first by
// digest under a request loop with zero failures, and a second rollout meanwhile is refused with
// DEPLOY_LOCKED naming the holder.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { v5 } from "uuid";
import { sleep } from "../src/core/sleep.js";
import type { RunningNode } from "../src/node/index.js";
import type { RegistryAccess } from "../src/pipeline/executor.js";
import type { RunningRegistry } from "../src/registry/index.js";
import { httpGet, type SupervisorUnderTest } from "./runtime-plane-support.js";
import { type BuildStack, startBuildStack } from "./support/build-stack.js";
import type { GitRepo } from "./support/git-repo.js";
import type { GithubDouble } from "./support/github-double.js";
import { runTcli } from "./support/tcli-node.js";
import { tempDir } from "./support/tools.js";

const OWNER = "relco";
const REPO = "rel-app";
const SUPERVISOR = "sup-rel";
const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  "COPY www /www",
  // The served tree is copied to /tmp (the only writable place) with the release the workload was
  // handed: TABBIFY_RELEASE and a copy of the file TABBIFY_RELEASE_MANIFEST names.
  `ENTRYPOINT ["/bin/busybox", "sh", "-c", "B=/bin/busybox; $B mkdir -p /tmp/www && $B cp /www/index.html /tmp/www/ && echo \\"$TABBIFY_RELEASE\\" > /tmp/www/release.txt && $B cp \\"$TABBIFY_RELEASE_MANIFEST\\" /tmp/www/manifest.json; $B httpd -f -p \${HOST}:\${PORT} -h /tmp/www & trap 'kill $!; exit 0' TERM; wait"]`,
  "",
].join("\n");
const TOML = '[app]\nname = "rel-app"\n';

let stack: BuildStack;
let registry: RunningRegistry;
let github: GithubDouble;
let registryAccess: RegistryAccess;
let repo: GitRepo;
let node: RunningNode;
let supervisor: SupervisorUnderTest;
let registryHost: string;
let cliHome: { path: string; remove(): Promise<void> };

interface StatusBody {
  state: string;
  success: boolean;
  app_uuid: string;
  digest: string;
  image_ref: string;
}

const api = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) =>
  stack.api<T>(method, path, body);

const deployAndWait = (sha: string): Promise<StatusBody> => stack.deploy(sha);

interface ReleaseBody {
  id: string;
  digest: string;
  environments: string[];
  source: Record<string, unknown>;
  manifest: Record<string, unknown>;
}

async function releasesOf(app: string): Promise<ReleaseBody[]> {
  const { status, json } = await api<{ releases: ReleaseBody[] }>("GET", `/api/v1/apps/${app}/releases`);
  assert.equal(status, 200, JSON.stringify(json));
  return json.releases;
}

/** Polls until the node has recorded `n` releases of the app (recording follows the deploy's end). */
async function untilReleases(app: string, n: number): Promise<ReleaseBody[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = (await api("GET", `/api/v1/apps/${app}/releases`)).status;
    if (status === 200) {
      const list = await releasesOf(app);
      if (list.length >= n && list[0]?.environments.length) return list;
    }
    if (Date.now() > deadline) throw new Error(`fewer than ${n} releases of ${app} recorded`);
    await sleep(200);
  }
}

before(async () => {
  cliHome = await tempDir("tabbify-releases-cli");
  stack = await startBuildStack({
    label: "releases-e2e",
    owner: OWNER,
    repo: REPO,
    supervisorName: SUPERVISOR,
  });
  ({ registry, github, registryAccess, repo, node, supervisor, registryHost } = stack);
});

after(async () => {
  await stack?.close();
  await cliHome?.remove();
});

describe("releases", () => {
  it("records a release per build, lists it as a referrer of the image, and rolls back by digest with no failed request", async () => {
    const shaA = await repo.commit(
      { Dockerfile: DOCKERFILE, "tabbify.toml": TOML, "www/index.html": "A\n" },
      "A",
    );
    const doneA = await deployAndWait(shaA);
    assert.equal(doneA.success, true, JSON.stringify(doneA));
    const app = doneA.app_uuid;
    supervisor.dockerApps.add(app);
    const [releaseA] = await untilReleases(app, 1);
    assert.equal(releaseA?.digest, doneA.digest);
    assert.deepEqual(releaseA?.environments, ["prod"]);
    assert.deepEqual(releaseA?.source, { repo_url: github.cloneUrl(`${OWNER}/${REPO}`), commit_sha: shaA });
    const manifest = releaseA!.manifest;
    assert.equal(manifest.release, releaseA!.id);
    assert.equal(manifest.image, `${registryHost}/${OWNER}/${app}@${doneA.digest}`);
    assert.equal((manifest.build as { builder: string }).builder, SUPERVISOR);
    assert.equal(typeof manifest.tabbify_version, "string");
    // The workload was handed its release: the id, and a read-only copy of the manifest.
    const hostOf = new URL(node.url).host;
    assert.equal((await httpGet(hostOf, `/app/${app}/release.txt`, 10_000)).body, `${releaseA!.id}\n`);
    assert.deepEqual(JSON.parse((await httpGet(hostOf, `/app/${app}/manifest.json`, 10_000)).body), manifest);

    // The registry lists the release manifest among the image's referrers.
    const pull = await registryAccess.pullToken!(OWNER, app);
    // The push follows the release record; poll briefly.
    let index: { manifests: { artifactType?: string; digest: string }[] } = { manifests: [] };
    let artifact: { artifactType?: string; digest: string } | undefined;
    for (let i = 0; i < 50 && !artifact; i++) {
      if (i > 0) await sleep(200);
      const referrers = await fetch(`${registry.url}/v2/${OWNER}/${app}/referrers/${doneA.digest}`, {
        headers: { authorization: `Bearer ${pull}` },
      });
      assert.equal(referrers.status, 200);
      index = (await referrers.json()) as typeof index;
      artifact = index.manifests.find(
        (m) => m.artifactType === "application/vnd.tabbify.release.manifest.v1+json",
      );
    }
    assert.ok(artifact, JSON.stringify(index));
    const artifactManifest = (await (
      await fetch(`${registry.url}/v2/${OWNER}/${app}/manifests/${artifact.digest}`, {
        headers: { authorization: `Bearer ${pull}`, accept: "application/vnd.oci.image.manifest.v1+json" },
      })
    ).json()) as { layers: { digest: string }[]; subject: { digest: string } };
    assert.equal(artifactManifest.subject.digest, doneA.digest);
    const layer = await fetch(
      `${registry.url}/v2/${OWNER}/${app}/blobs/${artifactManifest.layers[0]!.digest}`,
      {
        headers: { authorization: `Bearer ${pull}` },
      },
    );
    assert.deepEqual(await layer.json(), manifest, "the referrer carries the stored manifest");
    // Signed by the build key in cosign's layout: a referrer of the release artifact.
    const signatures = await fetch(`${registry.url}/v2/${OWNER}/${app}/referrers/${artifact.digest}`, {
      headers: { authorization: `Bearer ${pull}` },
    });
    const signatureIndex = (await signatures.json()) as { manifests: { artifactType?: string }[] };
    assert.deepEqual(
      signatureIndex.manifests.map((m) => m.artifactType),
      ["application/vnd.dev.cosign.artifact.sig.v1+json"],
      "the release manifest is signed",
    );

    const shaB = await repo.commit({ "www/index.html": "B\n" }, "B");
    const doneB = await deployAndWait(shaB);
    assert.equal(doneB.success, true, JSON.stringify(doneB));
    const listed = await untilReleases(app, 2);
    assert.deepEqual(
      listed.map((r) => [r.digest, r.environments]),
      [
        [doneB.digest, ["prod"]],
        [doneA.digest, []],
      ],
      "newest first, prod on B",
    );
    const appGet = () => httpGet(new URL(node.url).host, `/app/${app}/`, 10_000);
    assert.equal((await appGet()).body, "B\n");

    // Roll back (no `to`: the release prod ran before) while a client polls without pause.
    const answers: { status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          answers.push(await appGet());
        } catch (err) {
          answers.push({ status: 0, body: (err as Error).message });
        }
      }
    })();
    const started = performance.now();
    const [rolled, contender] = await Promise.all([
      api<{ release: ReleaseBody; from: string; deploy_id: string; targets: { success: boolean }[] }>(
        "POST",
        `/api/v1/apps/${app}/rollback`,
        {},
      ),
      sleep(300).then(() =>
        api<{ code: string; error: string }>("POST", `/api/v1/apps/${app}/rollback?wait=false`, {
          to: doneA.digest,
        }),
      ),
    ]);
    const rollbackMs = performance.now() - started;
    polling = false;
    await poller;
    assert.equal(rolled.status, 200, JSON.stringify(rolled.json));
    assert.equal(rolled.json.release.digest, doneA.digest);
    assert.equal(rolled.json.from, listed[0]!.id);
    assert.equal(contender.status, 409, JSON.stringify(contender.json));
    assert.equal(contender.json.code, "DEPLOY_LOCKED");
    assert.match(contender.json.error, /rollback by /, "names the holder");
    const failed = answers.filter((a) => a.status !== 200 || (a.body !== "A\n" && a.body !== "B\n"));
    assert.deepEqual(failed, [], `${failed.length} of ${answers.length} requests failed during the rollback`);
    assert.equal((await appGet()).body, "A\n");
    const described = await supervisor.call("GET", `/v1/apps/${app}`);
    assert.equal(
      String(described.json.version).split("@").at(-1),
      doneA.digest,
      "the runner runs A's digest",
    );
    const after = await releasesOf(app);
    assert.deepEqual(after.find((r) => r.digest === doneA.digest)?.environments, ["prod"]);
    console.log(`rollback latency: ${Math.round(rollbackMs)} ms over ${answers.length} requests, 0 failed`);

    // The rollback is a deploy record with its steps, like a build.
    const record = await api<{ state: string; trigger: string; digest: string }>(
      "GET",
      `/v1/deploy/${rolled.json.deploy_id}/status`,
    );
    assert.equal(record.status, 200, JSON.stringify(record.json));
    assert.equal(record.json.state, "succeeded");
    assert.equal(record.json.trigger, "rollback");
    const progress = await api<{ deploy: { id: string }; steps: { step: string; state: string }[] }>(
      "GET",
      `/api/v1/apps/${app}/progress`,
    );
    assert.equal(progress.json.deploy.id, rolled.json.deploy_id);
    // verify_signature checked A's image and A's signed release manifest (prod: require).
    const rollbackRecord = await node.pipeline!.store.get(rolled.json.deploy_id);
    const checked = rollbackRecord?.events.find(
      (e) => e.step === "verify_signature" && e.type === "step_finished",
    )?.data as { verified?: boolean; policy?: string; release_manifest?: { artifact: string } } | undefined;
    assert.equal(checked?.verified, true, JSON.stringify(checked));
    assert.equal(checked?.policy, "require");
    assert.equal(checked?.release_manifest?.artifact, artifact.digest);
    assert.deepEqual(
      progress.json.steps.map((st) => [st.step, st.state]),
      [
        ["acquire_lock", "succeeded"],
        ["verify_signature", "succeeded"],
        ["migrate", "succeeded"],
        ["fan_out", "succeeded"],
        ["verify", "succeeded"],
      ],
    );

    // tcli lists what the API lists.
    const tcliEnv = { env: { TABBIFY_TOKEN: stack.nodeKey }, home: cliHome.path };
    const listedByCli = await runTcli(["releases", app, "--json", "--node", node.url], tcliEnv);
    assert.equal(listedByCli.code, 0, listedByCli.stderr);
    assert.deepEqual(
      (JSON.parse(listedByCli.stdout) as { releases: ReleaseBody[] }).releases.map((r) => r.id),
      (await releasesOf(app)).map((r) => r.id),
    );
    const table = await runTcli(["releases", app, "--node", node.url], tcliEnv);
    assert.match(table.stdout, /^RELEASE +DIGEST +RUNS IN +CREATED +SOURCE$/m);
    assert.match(table.stdout, new RegExp(`^${releaseA!.id} +${doneA.digest.slice(7, 19)} +prod `, "m"));

    // Two rollouts of prod at once: the second queues (its record says so), then runs; the final
    // state is the last one's.
    const toB = api<{ deploy_id: string; queued_ms: number }>("POST", `/api/v1/apps/${app}/rollback`, {
      to: doneB.digest,
    });
    await sleep(300);
    const queueStarted = performance.now();
    const backToA = runTcli(["rollback", app, "--to", releaseA!.id, "--json", "--node", node.url], tcliEnv);
    let sawQueued = false;
    for (let i = 0; i < 100 && !sawQueued; i++) {
      const p = await api<{ deploy: { state: string; trigger: string } }>(
        "GET",
        `/api/v1/apps/${app}/progress`,
      );
      sawQueued = p.json.deploy.state === "queued";
      if (!sawQueued) await sleep(50);
    }
    const [first, second] = await Promise.all([toB, backToA]);
    assert.equal(first.status, 200, JSON.stringify(first.json));
    assert.equal(second.code, 0, second.stderr);
    const secondJson = JSON.parse(second.stdout) as { queued_ms: number; release: ReleaseBody };
    assert.ok(sawQueued, "the second rollback was seen queued");
    assert.ok(secondJson.queued_ms > 0, "it waited for the first");
    assert.equal(secondJson.release.digest, doneA.digest);
    assert.equal((await appGet()).body, "A\n", "the last rollout wins");
    console.log(
      `two queued rollbacks: ${Math.round(performance.now() - queueStarted)} ms, the second queued ${secondJson.queued_ms} ms`,
    );

    // Promotion takes only what the source environment ran, and moves that digest, pinned.
    const unverified = await runTcli(
      ["promote", app, "--from", "canary", "--to", "prod", "--node", node.url],
      tcliEnv,
    );
    assert.equal(unverified.code, 1, unverified.stderr);
    assert.match(unverified.stderr, /NOT_VERIFIED_IN canary/);
    const canaryUuid = v5("canary", app);
    supervisor.dockerApps.add(canaryUuid);
    const promoteStarted = performance.now();
    const promotedByCli = await runTcli(
      ["promote", app, "--from", "prod", "--to", "canary", "--json", "--node", node.url],
      tcliEnv,
    );
    assert.equal(promotedByCli.code, 0, promotedByCli.stderr);
    const promoted = JSON.parse(promotedByCli.stdout) as {
      uuid: string;
      release: ReleaseBody;
      deploy_id: string;
    };
    assert.equal(promoted.uuid, canaryUuid);
    assert.equal(promoted.release.digest, doneA.digest);
    const promoteRecord = await api<{ state: string; trigger: string }>(
      "GET",
      `/v1/deploy/${promoted.deploy_id}/status`,
    );
    assert.equal(promoteRecord.json.trigger, "promote");
    assert.equal(promoteRecord.json.state, "succeeded");
    for (let i = 0; ; i++) {
      const answer = await httpGet(new URL(node.url).host, `/app/${canaryUuid}/`, 10_000).catch(
        () => undefined,
      );
      if (answer?.body === "A\n") break;
      assert.ok(i < 100, "the promoted environment never answered");
      await sleep(100);
    }
    console.log(`promote latency: ${Math.round(performance.now() - promoteStarted)} ms`);
    assert.equal(
      (await httpGet(new URL(node.url).host, `/app/${canaryUuid}/release.txt`, 10_000)).body,
      `${promoted.release.id}\n`,
      "the promoted environment runs the same release",
    );
    const canary = await supervisor.call("GET", `/v1/apps/${canaryUuid}`);
    assert.equal(
      String(canary.json.version).split("@").at(-1),
      doneA.digest,
      "the same digest in both environments",
    );
    const promotedList = await releasesOf(app);
    assert.deepEqual(promotedList.find((r) => r.digest === doneA.digest)?.environments, ["canary", "prod"]);

    // Nothing to go back to under a name that never ran; an unknown release is a 404.
    const unknown = await api<{ code: string }>("POST", `/api/v1/apps/${app}/rollback`, {
      to: `sha256:${"0".repeat(64)}`,
    });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.code, "RELEASE_NOT_FOUND");

    // The audit chain holds the releases and the rollback with its actor.
    const audit = await api<{ events: { action: string; actor: string }[] }>(
      "GET",
      "/api/v1/audit?limit=500",
    );
    const actions = (audit.json.events ?? []).map((e) => e.action);
    for (const a of ["release.create", "release.deploy", "release.rollback", "release.promote"])
      assert.ok(actions.includes(a), a);
  });

  it("registers tcli-push versions by content digest: the same tree twice is one release", async () => {
    const created = await api<{ uuid: string }>("PUT", "/api/v1/apps/pushed-app", { tenant: OWNER });
    assert.ok(created.status === 201 || created.status === 200, JSON.stringify(created.json));
    const body = {
      version: "v1",
      manifest_toml: '[app]\nname = "pushed-app"\n',
      files: [
        { path: "server.js", digest: `sha256:${"1".repeat(64)}` },
        { path: "a.txt", digest: `sha256:${"2".repeat(64)}` },
      ],
    };
    const first = await api<ReleaseBody>("POST", "/api/v1/apps/pushed-app/releases", body);
    assert.equal(first.status, 201, JSON.stringify(first.json));
    assert.deepEqual(first.json.source, { artifact_version: "v1" });
    const again = await api<ReleaseBody>("POST", "/api/v1/apps/pushed-app/releases", {
      ...body,
      version: "v2",
      files: [...body.files].reverse(),
    });
    assert.equal(again.status, 200);
    assert.equal(again.json.id, first.json.id);
    const bad = await api<{ code: string }>("POST", "/api/v1/apps/pushed-app/releases", { version: "v3" });
    assert.equal(bad.status, 400);
    const anonymous = await fetch(`${node.url}/api/v1/apps/pushed-app/releases`);
    assert.equal(anonymous.status, 401);
  });

  it("tcli push registers each version with the node it has a token for, creating the app on first sight", async () => {
    const dir = join(stack.root, "pushed-cli");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "manifest.toml"),
      '[app]\nname = "cli-pushed"\n\n[lifecycle]\nmode = "always_on"\n\n[runtime]\ntype = "process"\ncommand = ["node", "server.js"]\n',
    );
    await writeFile(join(dir, "server.js"), "console.log('hi');\n");
    const storeArgs = ["--store", "local", "--store-dir", join(stack.root, "cli-store")];
    const home = { home: cliHome.path };
    const pushOnce = () =>
      runTcli(["push", dir, ...storeArgs, "--json", "--node", node.url], {
        ...home,
        env: { TABBIFY_TOKEN: stack.nodeKey },
      });
    const first = await pushOnce();
    const pushed = JSON.parse(first.stdout) as { appId: string; release: ReleaseBody };
    // tcli exits 1 when the node's rollout of the version failed (this app only prints and exits).
    const exitFor = (r: { rollout?: { state?: string } }) => (r.rollout?.state === "failed" ? 1 : 0);
    assert.equal(first.code, exitFor(pushed.release as { rollout?: { state?: string } }), first.stderr);
    assert.match(pushed.release.digest, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(pushed.release.source, { artifact_version: "v1" });
    const registered = await api<{ name: string; tenant: string }>("GET", `/api/v1/apps/${pushed.appId}`);
    assert.equal(registered.status, 200, "the node created the app on first sight");
    assert.equal(registered.json.name, "cli-pushed");
    // The same tree again is a new version but the same release.
    const second = await pushOnce();
    const again = JSON.parse(second.stdout) as { release: ReleaseBody };
    assert.equal(second.code, exitFor(again.release as { rollout?: { state?: string } }), second.stderr);
    assert.equal(again.release.id, pushed.release.id);
    const text = await runTcli(["releases", "cli-pushed", "--node", node.url], {
      ...home,
      env: { TABBIFY_TOKEN: stack.nodeKey },
    });
    assert.match(text.stdout, new RegExp(`^${pushed.release.id} .* push v1$`, "m"));
    // Without a token for the node, push only uploads, as before.
    const offline = await runTcli(["push", dir, ...storeArgs, "--json", "--node", node.url], home);
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal((JSON.parse(offline.stdout) as { release?: unknown }).release, undefined);
  });
});
