import { parse } from "smol-toml";
import { TabbifyError } from "../core/errors.js";
import { parseAppProbes } from "../runtimes/app-probes.js";

/**
 * What an app's manifest (tabbify.toml for builds, manifest.toml for `tcli push`) declares about
 * how its releases roll out:
 *
 *   [probes]            healthz = "/api/healthz", ready = "/api/ready", version = "/api/version"
 *   [[environments]]    name = "test", targets = ["sup-a"]   (in order; builds land in the first)
 *   [deploy]            migrate = ["cmd", "arg", …]          (run once before any target switches)
 *
 * They are recorded with each release (its manifest's `deploy` member), so a promotion or a
 * rollback of that release probes and targets as it declared.
 */

export interface DeclaredEnvironment {
  name: string;
  /** Supervisor names on the roster. */
  targets: string[];
}

export interface ReleaseDeclarations {
  probes?: { healthz?: string; ready?: string; version?: string };
  environments?: DeclaredEnvironment[];
  migrate?: string[];
}

export const ENVIRONMENT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Reads the declarations from a parsed manifest; `fail(key, why)` throws the caller's error. */
export function readDeclarations(
  doc: Record<string, unknown>,
  fail: (key: (string | number)[], why: string) => never,
): ReleaseDeclarations {
  const out: ReleaseDeclarations = {};
  if (doc.probes !== undefined) {
    const probes = doc.probes;
    if (typeof probes !== "object" || probes === null || Array.isArray(probes)) {
      fail(["probes"], "probes must be a table ([probes])");
    }
    const { expect: _ignored, ...declared } = probes as Record<string, unknown>;
    try {
      const parsed = parseAppProbes(declared, "MANIFEST_INVALID");
      if (parsed) out.probes = parsed;
    } catch (err) {
      fail(["probes"], (err as Error).message);
    }
  }
  if (doc.environments !== undefined) {
    const list = doc.environments;
    if (!Array.isArray(list) || list.length === 0 || list.length > 16) {
      fail(["environments"], "environments must be 1 to 16 [[environments]] tables");
    }
    const seen = new Set<string>();
    out.environments = (list as unknown[]).map((entry, i) => {
      const env = entry as Record<string, unknown>;
      if (typeof env !== "object" || env === null || Array.isArray(env)) {
        return fail(["environments", i], `environments[${i}] must be a table`);
      }
      if (typeof env.name !== "string" || !ENVIRONMENT_NAME.test(env.name)) {
        return fail(["environments", i, "name"], `environments[${i}].name must be a name ([a-z0-9-])`);
      }
      if (seen.has(env.name)) fail(["environments", i, "name"], `environment ${env.name} is declared twice`);
      seen.add(env.name);
      const targets = env.targets;
      if (
        !Array.isArray(targets) ||
        targets.length === 0 ||
        targets.length > 64 ||
        targets.some((t) => typeof t !== "string" || t === "" || t.length > 128)
      ) {
        return fail(["environments", i, "targets"], `environments[${i}].targets must list supervisor names`);
      }
      // One app has one runner per supervisor and environment uuid, but two environments on one
      // supervisor would be two runners of the same app there: allowed; twice in one is not.
      if (new Set(targets).size !== targets.length) {
        fail(["environments", i, "targets"], `environments[${i}].targets names a supervisor twice`);
      }
      return { name: env.name, targets: [...(targets as string[])] };
    });
  }
  const deploy = doc.deploy;
  // `[[deploy]]` (an array) lists build targets (tabbify.toml); the `[deploy]` table holds migrate.
  if (typeof deploy === "object" && deploy !== null && !Array.isArray(deploy)) {
    const migrate = (deploy as Record<string, unknown>).migrate;
    if (migrate !== undefined) {
      if (
        !Array.isArray(migrate) ||
        migrate.length === 0 ||
        migrate.length > 64 ||
        migrate.some((a) => typeof a !== "string" || a.length > 4096) ||
        migrate[0] === ""
      ) {
        fail(
          ["deploy", "migrate"],
          'deploy.migrate must be a command as a list, e.g. ["node", "migrate.js"]',
        );
      }
      out.migrate = [...(migrate as string[])];
    }
  }
  return out;
}

/** The declarations of a manifest.toml a push registered; MANIFEST_INVALID naming the key. */
export function declarationsOfToml(source: string, file = "manifest.toml"): ReleaseDeclarations {
  let doc: Record<string, unknown>;
  try {
    doc = parse(source) as Record<string, unknown>;
  } catch (err) {
    throw new TabbifyError("MANIFEST_INVALID", `${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  return readDeclarations(doc, (key, why) => {
    throw new TabbifyError("MANIFEST_INVALID", `${file}: ${key.join(".")}: ${why}`);
  });
}

/** The declarations a release recorded (its manifest's `deploy` member), or none. */
export function declarationsOfRelease(manifest: Record<string, unknown>): ReleaseDeclarations {
  const deploy = manifest.deploy;
  return typeof deploy === "object" && deploy !== null ? (deploy as ReleaseDeclarations) : {};
}

/**
 * The probes a target checks on the new workload: the declared paths, and what the version probe
 * must report (the release id or its digest). Undefined when the app declares none.
 */
export function declaredProbes(
  declarations: ReleaseDeclarations | undefined,
  release: { id: string } | undefined,
  digest: string,
): { healthz?: string; ready?: string; version?: string; expect: string[] } | undefined {
  const probes = declarations?.probes;
  if (!probes || !(probes.healthz || probes.ready || probes.version)) return undefined;
  return { ...probes, expect: release ? [release.id, digest] : [digest] };
}
