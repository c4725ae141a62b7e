/**
 * `tabbify <role>`: the one binary. Each role's composition root lives in its own module and is
 * loaded only when chosen, so `tabbify runner` does not pay for the registry's imports.
 */
import { isTabbifyError } from "../core/errors.js";
import { tabbifyVersion } from "../core/version.js";

export interface RoleModule {
  run(argv: string[], env: NodeJS.ProcessEnv): Promise<number | undefined>;
}

const roles: Record<string, { summary: string; load: () => Promise<RoleModule> }> = {
  up: {
    summary: "start the whole platform on loopback with embedded defaults",
    load: () => import("./up.js"),
  },
  down: {
    summary: "stop everything `tabbify up` of a data dir started, apps included",
    load: () => import("./down.js"),
  },
  registry: { summary: "OCI Distribution registry on /v2", load: () => import("./registry.js") },
  auth: {
    summary: "tenant JWTs: serve POST /v1/validate, or `auth token` to issue one",
    load: () => import("./auth.js"),
  },
  node: {
    summary: "control plane: deploy API, webhooks, topology, /app/<uuid> proxy",
    load: () => import("./node.js"),
  },
  supervisor: { summary: "runner lifecycle on this host", load: () => import("./supervisor.js") },
  runner: {
    summary: "one app's workload (spawned by the supervisor, never by hand)",
    load: () => import("./runner.js"),
  },
  audit: {
    summary: "`audit verify`: recompute the node's audit chain and name the first broken seq",
    load: () => import("./audit.js"),
  },
  mesh: {
    summary: "`mesh token`: mint a join token for the WireGuard mesh from the node's store",
    load: () => import("./mesh.js"),
  },
  address: {
    summary: "print the addresses an app uuid (or --repo URL) gets",
    load: () => import("./address.js"),
  },
  upgrade: {
    summary: "upgrade (or --rollback) the running platform to a release tarball; `upgrade pack` builds one",
    load: () => import("./upgrade.js"),
  },
};

/**
 * `--self-check`: what a release must pass before it may replace the running one. Every role's
 * module loads (its imports resolve against the release's node_modules) and the store's
 * migrations run on a throwaway database.
 */
async function selfCheck(): Promise<number> {
  for (const [name, entry] of Object.entries(roles)) {
    try {
      await entry.load();
    } catch (err) {
      process.stderr.write(`tabbify: self-check: role ${name} does not load: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const { openStore } = await import("../store/index.js");
  const store = await openStore({ engine: "sqlite", file: ":memory:" });
  await store.close();
  process.stdout.write(`self-check ok: tabbify ${tabbifyVersion}\n`);
  return 0;
}

function usage(): string {
  const width = Math.max(...Object.keys(roles).map((r) => r.length));
  const lines = Object.entries(roles).map(([name, r]) => `  ${name.padEnd(width)}  ${r.summary}`);
  return `usage: tabbify <role> [flags] | tabbify --version | tabbify --self-check\n\nroles:\n${lines.join("\n")}\n\n\`tabbify <role> --help\` lists a role's flags and env vars.\n`;
}

async function main(): Promise<number> {
  const [role, ...rest] = process.argv.slice(2);
  if (!role || role === "--help" || role === "-h" || role === "help") {
    process.stdout.write(usage());
    return role ? 0 : 2;
  }
  if (role === "--version") {
    process.stdout.write(`${tabbifyVersion}\n`);
    return 0;
  }
  if (role === "--self-check") return selfCheck();
  const entry = roles[role];
  if (!entry) {
    process.stderr.write(`tabbify: unknown role "${role}"\n\n${usage()}`);
    return 2;
  }
  // A role started by `tabbify up` listens on the socket `up` holds for its port (see
  // src/upgrade/listener-handoff.ts), so replacing the process never refuses a connection.
  // A supervisor that replaced itself hands its successor its socket the same way ("successor").
  const handoff = process.env.TABBIFY_LISTENER_HANDOFF;
  if (handoff === "1" || handoff === "successor") {
    delete process.env.TABBIFY_LISTENER_HANDOFF;
    const { receiveListener } = await import("../upgrade/listener-handoff.js");
    await receiveListener(handoff === "1" ? "up" : "predecessor");
  }
  const mod = await entry.load();
  return (await mod.run(rest, process.env)) ?? 0;
}

main().then(
  (code) => {
    // Long-running roles keep the event loop alive themselves; commands end here.
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (isTabbifyError(err)) {
      process.stderr.write(`tabbify: ${err.message} (${err.code})\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(
        `tabbify: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 70;
    }
  },
);
