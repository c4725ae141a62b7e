import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Static } from "@sinclair/typebox";
import { isErrno, TabbifyError } from "../core/errors.js";
import { NodeClient } from "../node/client.js";
import type { gcRootsSchema } from "../node/schemas/operations.js";

/**
 * Release-aware GC (`tabbify registry gc --keep-releases-from <node URL>`): the node names, per
 * app repository it knows, every release digest it has recorded and the ones to keep (running in
 * an environment, promotable to the next, or among the last N). In such a repository a release
 * digest outside the keep set loses its tag as a root (and so do the signature tags and
 * referrers hanging off it); everything else follows the plain rules. Repositories the node does
 * not name are not touched by these rules. A release manifest goes only when two runs in a row
 * found it unreferenced: the first run records it in `gc-release-candidates.json`.
 */

export interface ReleaseRepository {
  /** Every release digest the node recorded for this repository. */
  releases: ReadonlySet<string>;
  /** digest → why it stays. */
  keep: ReadonlyMap<string, string>;
}

export interface ReleaseRoots {
  repositories: ReadonlyMap<string, ReleaseRepository>;
  /** `repository@digest` the previous run found unreferenced: only these may be removed now. */
  previous: ReadonlySet<string>;
}

/** The node's `GET /api/v1/registry/gc-roots` answer. */
export type GcRootsReply = Static<(typeof gcRootsSchema)["response"][200]>;

export async function fetchReleaseRoots(
  nodeUrl: string,
  token: string | undefined,
  keepReleases: number,
): Promise<Map<string, ReleaseRepository>> {
  const node = new NodeClient({ url: nodeUrl, ...(token ? { token } : {}), timeoutMs: 30_000 });
  let body: GcRootsReply;
  try {
    body = await node.request("GET", `/api/v1/registry/gc-roots?keep=${keepReleases}`);
  } catch (err) {
    if (!(err instanceof TabbifyError)) throw err;
    const status = (err.detail as { status?: number } | undefined)?.status;
    throw new TabbifyError(
      "NODE_UNREACHABLE",
      status === undefined
        ? `--keep-releases-from: ${node.url} unreachable (${err.message}); nothing was collected`
        : `--keep-releases-from: the node answered HTTP ${status} for its release roots${status === 401 ? " (set REGISTRY_GC_NODE_TOKEN)" : ""}; nothing was collected`,
    );
  }
  const out = new Map<string, ReleaseRepository>();
  for (const repo of body.repositories ?? []) {
    out.set(repo.repository, {
      releases: new Set(repo.releases),
      keep: new Map(repo.keep.map((k) => [k.digest, k.reason])),
    });
  }
  return out;
}

const candidatesFile = "gc-release-candidates.json";

export async function loadReleaseCandidates(dataDir: string): Promise<Set<string>> {
  try {
    return new Set(JSON.parse(await readFile(join(dataDir, candidatesFile), "utf8")) as string[]);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return new Set();
    throw err;
  }
}

export async function saveReleaseCandidates(dataDir: string, candidates: readonly string[]): Promise<void> {
  const path = join(dataDir, candidatesFile);
  await writeFile(`${path}.tmp`, JSON.stringify([...candidates].sort()), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}
