/**
 * `npm run bench:deploy`: the time from a signed GitHub push webhook to the first 200 from the new
 * version through the node's `/app/<uuid>`, split by the deploy's own step events, for a small
 * `FROM scratch` image (static busybox + one page). The whole stack is real and local: the GitHub
 * double serving a bare repo over smart HTTP, our auth service, our registry with auth on, the
 * node, a `tabbify supervisor --builder` process and its runners, the real dockerd.
 *
 * Run 1 is a cold start (no runner yet); later runs are zero-downtime swaps of the running app,
 * each a new commit. `BENCH_DEPLOY_RUNS` sets how many (default 4).
 */
import { spawnSync } from "node:child_process";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { copyFileSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { sleep } from "../src/core/sleep.js";
import { startNode } from "../src/node/index.js";
import { tenantRegistryAccess } from "../src/node/registry-access.js";
import type { DeployEvent } from "../src/pipeline/executor.js";
import { stepNames } from "../src/pipeline/plan.js";
import { startRegistry } from "../src/registry/index.js";
import { SupervisorUnderTest } from "../test/runtime-plane-support.js";
import { createGitRepo } from "../test/support/git-repo.js";
import { startGithubDouble } from "../test/support/github-double.js";
import { ensureDockerd, requireCommand, tempDir } from "../test/support/tools.js";

/** The fields of GitHub's sample push payload this bench rewrites; the rest passes through. */
interface PushPayload {
  ref: string;
  before: string;
  after: string;
  installation?: Record<string, unknown>;
  repository: Record<string, unknown>;
  [field: string]: unknown;
}
const SECRET = "bench-webhook-secret";
const NODE_KEY = "bench-node-key";
const SUPERVISOR_KEY = "bench-supervisor-key";
const APP_ID = "9001";
const INSTALLATION = 42;
const OWNER = "bench";
const REPO = "tiny";
const runs = Number(process.env.BENCH_DEPLOY_RUNS ?? "4");

const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  "COPY www /www",
  // PID 1 in a container ignores SIGTERM unless it traps it: the trap makes a swap's stop quick.
  `ENTRYPOINT ["/bin/busybox", "sh", "-c", "/bin/busybox httpd -f -p \${HOST}:\${PORT} -h /www & trap 'kill $!; exit 0' TERM; wait"]`,
  "",
].join("\n");

const require = createRequire(import.meta.url);
const examples = JSON.parse(
  readFileSync(require.resolve("@octokit/webhooks-examples/api.github.com/index.json"), "utf8"),
) as { name: string; examples: Record<string, unknown>[] }[];
const pushExample = examples.find((e) => e.name === "push")!.examples[4]!;

interface RunTiming {
  run: number;
  kind: "cold" | "swap";
  ackMs: number;
  steps: Record<string, number>;
  deployDoneMs: number;
  firstNewMs: number;
}

function fmt(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

async function main(): Promise<void> {
  await ensureDockerd();
  requireCommand("git", "git");
  requireCommand("busybox", "busybox-static");
  const root = await tempDir("tabbify-bench-deploy");
  const cleanups: (() => Promise<void> | void)[] = [() => root.remove()];
  let appUuid: string | undefined;
  let registryHost = "";
  try {
    const authDir = join(root.path, "auth");
    const auth = buildAuthApp({ key: await loadOrCreateSigningKey(authDir) });
    await auth.listen({ host: "127.0.0.1", port: 0 });
    cleanups.unshift(() => auth.close());
    const authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
    const registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
    cleanups.unshift(() => registry.close());
    registryHost = new URL(registry.url).host;

    const projectRoot = join(root.path, "git");
    const repo = await createGitRepo(projectRoot, OWNER, REPO);
    copyFileSync(realpathSync("/bin/busybox"), join(repo.workDir, "busybox"));
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const github = await startGithubDouble({
      projectRoot,
      appId: APP_ID,
      appPublicKey: publicKey,
      installations: { [INSTALLATION]: [`${OWNER}/${REPO}`] },
      privateRepos: [`${OWNER}/${REPO}`],
    });
    cleanups.unshift(() => github.close());

    const node = await startNode({
      port: 0,
      dataDir: join(root.path, "node"),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
      deploy: {
        githubWebhookSecret: SECRET,
        githubApiUrl: github.apiUrl,
        githubApp: {
          appId: APP_ID,
          privateKeyPem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
        },
        registry: await tenantRegistryAccess({ registryHost, authDataDir: authDir }),
        supervisorKey: SUPERVISOR_KEY,
        // The GitHub double listens on 127.0.0.1.
        allowPrivateRepos: true,
      },
    });
    cleanups.unshift(() => node.close());
    const supervisor = new SupervisorUnderTest(
      ["--builder", "--allow-private-repos", "--node", node.url, "--name", "bench-sup"],
      "local",
      {
        TABBIFY_NODE_KEY: NODE_KEY,
        SUPERVISOR_API_KEY: SUPERVISOR_KEY,
      },
    );
    cleanups.unshift(async () => {
      await supervisor.cleanup();
      // Only now: an image a running container uses cannot be removed.
      if (appUuid === undefined) return;
      const images = spawnSync("docker", ["images", "-q", `${registryHost}/${OWNER}/${appUuid}`], {
        encoding: "utf8",
      });
      const ids = [...new Set(images.stdout.split("\n").filter(Boolean))];
      if (ids.length > 0) spawnSync("docker", ["rmi", "-f", ...ids]);
    });
    await supervisor.start();
    while (!node.coordinator.supervisors().some((s) => s.name === "bench-sup")) {
      await sleep(100);
    }

    const timings: RunTiming[] = [];
    let before = "0".repeat(40);
    for (let run = 1; run <= runs; run++) {
      const marker = `version-${run}\n`;
      const sha = await repo.commit(
        run === 1
          ? { Dockerfile: DOCKERFILE, "tabbify.toml": '[app]\nname = "tiny"\n', "www/index.html": marker }
          : { "www/index.html": marker },
        `run ${run}`,
      );
      const payload = structuredClone(pushExample) as PushPayload;
      payload.ref = "refs/heads/main";
      payload.before = before;
      payload.after = sha;
      payload.installation = { ...payload.installation, id: INSTALLATION };
      payload.repository = {
        ...payload.repository,
        name: REPO,
        full_name: `${OWNER}/${REPO}`,
        clone_url: github.cloneUrl(`${OWNER}/${REPO}`),
        default_branch: "main",
        private: true,
      };
      before = sha;
      const body = Buffer.from(JSON.stringify(payload));
      const t0 = performance.now();
      const res = await fetch(`${node.url}/v1/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "push",
          "x-github-delivery": `bench-${process.pid}-${run}`,
          "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
        },
        body,
      });
      const ackMs = performance.now() - t0;
      const accepted = (await res.json()) as { id: string };
      if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(accepted)}`);

      // Poll the app for the new version while the deploy runs; the first 200 carrying it ends the clock.
      let firstNewMs = Number.NaN;
      let deployDoneMs = Number.NaN;
      const auth = { authorization: `Bearer ${NODE_KEY}` };
      for (;;) {
        if (appUuid === undefined) {
          const status = await fetch(`${node.url}/v1/deploy/${accepted.id}/status`, { headers: auth });
          const json = (await status.json()) as { app_uuid?: string };
          if (json.app_uuid) appUuid = json.app_uuid;
        }
        if (appUuid !== undefined && Number.isNaN(firstNewMs)) {
          const app = await fetch(`${node.url}/app/${appUuid}/`).catch(() => undefined);
          const text = app ? await app.text() : "";
          if (app?.status === 200 && text === marker) firstNewMs = performance.now() - t0;
        }
        if (Number.isNaN(deployDoneMs)) {
          const status = await fetch(`${node.url}/v1/deploy/${accepted.id}/status`, { headers: auth });
          await status.body?.cancel();
          if (status.status === 200) deployDoneMs = performance.now() - t0;
        }
        if (!Number.isNaN(firstNewMs) && !Number.isNaN(deployDoneMs)) break;
        if (performance.now() - t0 > 300_000) throw new Error(`run ${run} did not finish in 5 minutes`);
        await sleep(20);
      }
      const record = await node.pipeline!.store.get(accepted.id);
      if (record?.status !== "succeeded" || record.results.some((r) => !r.success)) {
        throw new Error(`run ${run} failed: ${JSON.stringify(record?.error ?? record?.results)}`);
      }
      const steps: Record<string, number> = {};
      for (const event of record.events as DeployEvent[]) {
        if (event.type === "step_finished" && typeof event.data?.duration_ms === "number") {
          steps[event.step] = event.data.duration_ms;
        }
      }
      timings.push({ run, kind: run === 1 ? "cold" : "swap", ackMs, steps, deployDoneMs, firstNewMs });
      process.stderr.write(`run ${run}: first 200 from the new version after ${fmt(firstNewMs)}\n`);
    }
    if (appUuid) supervisor.dockerApps.add(appUuid);

    const columns = ["run", "ack", ...stepNames, "deploy done", "first new 200"];
    const rows = timings.map((t) => [
      `${t.run} ${t.kind}`,
      fmt(t.ackMs),
      ...stepNames.map((s) => (t.steps[s] === undefined ? "-" : fmt(t.steps[s]!))),
      fmt(t.deployDoneMs),
      fmt(t.firstNewMs),
    ]);
    const swaps = timings.filter((t) => t.kind === "swap");
    if (swaps.length > 0) {
      const median = (values: number[]) => {
        const sorted = [...values].sort((a, b) => a - b);
        return sorted[Math.floor(sorted.length / 2)]!;
      };
      rows.push([
        "swap median",
        fmt(median(swaps.map((t) => t.ackMs))),
        ...stepNames.map((s) => fmt(median(swaps.map((t) => t.steps[s] ?? 0)))),
        fmt(median(swaps.map((t) => t.deployDoneMs))),
        fmt(median(swaps.map((t) => t.firstNewMs))),
      ]);
    }
    const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
    console.log(
      `\nbench:deploy: webhook → first 200 from the new version (${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)})`,
    );
    console.log(line(columns));
    for (const row of rows) console.log(line(row));
    console.log(
      "\nack = webhook answered 202; step columns = the deploy's own step_finished durations; 'first new 200' = the first answer with the new page through /app/<uuid>.",
    );
  } finally {
    for (const cleanup of cleanups) await Promise.resolve(cleanup()).catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
