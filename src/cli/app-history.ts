import { isTabbifyError } from "../core/errors.js";
import type { DeploySummary } from "../node/apps-history-routes.js";
import type { NodeClient } from "../node/client.js";
import { table } from "./node-output.js";

/**
 * `tcli deploys [app]` and `tcli logs <app> --deploy [id]`: an app's deploy history and one
 * deploy's build and rollout log, from the node (`/api/v1/apps/:app/deploys…`).
 */

/** A deploy as the node's history route answers it, with the app it belongs to. */
export type DeployRow = DeploySummary & { app: string };

interface DeploysAnswer {
  app: string;
  deploys: Array<Omit<DeployRow, "app">>;
}

async function deploysOf(client: NodeClient, ref: string, limit: number): Promise<DeployRow[]> {
  const answer = await client.request<DeploysAnswer>(
    "GET",
    `/api/v1/apps/${encodeURIComponent(ref)}/deploys?limit=${limit}`,
  );
  return answer.deploys.map((d) => ({ app: answer.app, ...d }));
}

/** One app's deploys, or every visible app's merged, newest first. */
export async function listDeploys(
  client: NodeClient,
  ref: string | undefined,
  limit: number,
): Promise<DeployRow[]> {
  if (ref !== undefined) return deploysOf(client, ref, limit);
  const rows: DeployRow[] = [];
  for (const app of await client.apps()) {
    try {
      rows.push(...(await deploysOf(client, app.uuid, limit)));
    } catch (err) {
      // An app removed between the two calls has no deploys to show.
      if (!isTabbifyError(err, "APP_NOT_FOUND")) throw err;
    }
  }
  return rows.sort((a, b) => (a.created_at < b.created_at ? 1 : -1)).slice(0, limit);
}

export function formatDeploys(rows: DeployRow[]): string {
  if (rows.length === 0) return "no deploys yet\n";
  return table(
    ["APP", "ID", "STATUS", "TRIGGER", "REF", "CREATED", "TARGETS", "ERROR"],
    rows.map((d) => [
      d.app,
      d.id,
      d.status,
      d.trigger,
      d.ref ?? "-",
      d.created_at,
      d.targets.map((t) => `${t.supervisor}:${t.success ? "ok" : "failed"}`).join(",") || "-",
      d.error ? `${d.error.code}: ${d.error.message}`.slice(0, 120) : "",
    ]),
  );
}

/** Streams a deploy's log (`id` or `latest`) to `write`. */
export async function streamDeployLog(
  client: NodeClient,
  ref: string,
  id: string,
  write: (text: string) => void,
): Promise<void> {
  const body = await client.text(
    `/api/v1/apps/${encodeURIComponent(ref)}/deploys/${encodeURIComponent(id)}/log`,
  );
  const decoder = new TextDecoder();
  for await (const chunk of body) write(decoder.decode(chunk, { stream: true }));
}
