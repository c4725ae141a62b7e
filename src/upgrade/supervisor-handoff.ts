/**
 * A supervisor that no `tabbify up` keeps (one on another host) replaces itself when the
 * platform is upgraded: `POST /v1/platform/handoff` (the supervisors' API key) with a release
 * tarball, or `{"version"}` of a release it kept. It unpacks and verifies the release under its
 * own `<data>/releases/`, starts the new supervisor with the same arguments and environment,
 * hands it its listening socket over IPC (so no connection is refused), and answers once the
 * port answers `/api/version` with the new version and `/api/ready` 200 over one connection.
 * Only then does the old process stop (runners keep running; the new one re-adopts them). A new
 * process that exits or is not ready in time is stopped, and the old one keeps serving.
 *
 * The successor is detached: it outlives the old process, which its service manager must allow
 * (see docs/DECISIONS.md).
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { Server } from "node:net";
import { join } from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { rawHandle } from "../runner/succession.js";
import { childExit, waitVersionReady } from "./handoff-probe.js";
import { listenerFromUp, offerListener } from "./listener-handoff.js";
import {
  commitRelease,
  type PlatformRelease,
  readReleaseState,
  releaseEntry,
  unpackRelease,
} from "./releases.js";
import { supervisorHandoffSchema } from "./schemas.js";
import { acceptTarballBodies, saveTarball } from "./upload.js";

export interface SupervisorHandoffOptions {
  dataDir: string;
  /** The release this process runs: its package root and version. */
  running: PlatformRelease;
  listen: { host: string; port: number };
  /** The API's server, whose socket goes to the successor. */
  server: () => Server;
  /** How long the successor has to become ready. */
  readyTimeoutMs: number;
  /** Called once the answer has left: this process then stops (its runners keep running). */
  handedOff: () => void;
}

/** The release a handoff asks for: one kept on disk by version, or the uploaded tarball. */
async function targetRelease(
  opts: SupervisorHandoffOptions,
  body: unknown,
  isJson: boolean,
): Promise<PlatformRelease> {
  if (isJson) {
    const version = (body as { version: string }).version;
    if (version === opts.running.version)
      throw new TabbifyError("RELEASE_RUNNING", `version ${version} is the one running`);
    const kept = (await readReleaseState(opts.dataDir)).history.find(
      (r) => r.version === version && existsSync(releaseEntry(r)),
    );
    if (!kept) throw new TabbifyError("RELEASE_NOT_FOUND", `no release ${version} on this host`);
    return kept;
  }
  const tarball = await saveTarball(body, join(opts.dataDir, "platform-upgrades"), randomUUID());
  try {
    return await unpackRelease(opts.dataDir, tarball, {
      nodeModules: join(opts.running.dir, "node_modules"),
      running: opts.running,
    });
  } finally {
    await rm(tarball, { force: true });
  }
}

/** Starts `target`'s supervisor on this process's socket; resolves once it answers ready. */
async function startSuccessor(opts: SupervisorHandoffOptions, target: PlatformRelease): Promise<number> {
  const begun = Date.now();
  const child = spawn(
    process.execPath,
    [...process.execArgv, releaseEntry(target), ...process.argv.slice(2)],
    {
      env: { ...process.env, TABBIFY_LISTENER_HANDOFF: "successor" },
      detached: true,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    },
  );
  offerListener(child, { ...opts.listen, handle: rawHandle(opts.server()) });
  try {
    await waitVersionReady(
      opts.listen.host,
      opts.listen.port,
      target.version,
      opts.readyTimeoutMs,
      childExit(child),
    );
  } catch (err) {
    if (childExit(child)() === undefined) {
      child.kill("SIGTERM");
      const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await new Promise((done) => child.once("exit", done));
      clearTimeout(kill);
    }
    throw new TabbifyError("ROLE_NOT_READY", `supervisor ${target.version}: ${(err as Error).message}`);
  }
  if (child.connected) child.disconnect();
  child.unref();
  return Date.now() - begun;
}

export function registerSupervisorHandoff(app: FastifyInstance, opts: SupervisorHandoffOptions): void {
  let busy = false;
  app.register(async (untyped) => {
    acceptTarballBodies(untyped);
    // The schema types the answer; the body is a tarball or JSON by content type, which
    // targetRelease tells apart.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    scope.post("/v1/platform/handoff", { schema: supervisorHandoffSchema }, async (req, reply) => {
      if (listenerFromUp()) {
        throw new TabbifyError(
          "UPGRADE_UNAVAILABLE",
          "tabbify up holds this supervisor's socket and hands it over itself",
        );
      }
      if (busy) throw new TabbifyError("UPGRADE_IN_PROGRESS", "a handoff is already under way");
      busy = true;
      try {
        const isJson = (req.headers["content-type"] ?? "").startsWith("application/json");
        const target = await targetRelease(opts, req.body, isJson);
        const readyMs = await startSuccessor(opts, target);
        await commitRelease(opts.dataDir, opts.running, target);
        reply.raw.once("finish", () => opts.handedOff());
        return { version: target.version, ready_ms: readyMs };
      } catch (err) {
        busy = false;
        throw err;
      }
    });
  });
}
