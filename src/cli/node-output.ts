import type { AppOperation } from "../node/client.js";
import type { AppRow, AppStatus, LoginResult, RemoveResult } from "./node-commands.js";

/** Text for the node commands' results (handlers return data; these make it readable). */

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

export function formatLogin(r: LoginResult): string {
  return `logged in to ${r.node} (the token sees ${r.apps_visible} app${r.apps_visible === 1 ? "" : "s"})\nsaved to ${r.saved_to}\n`;
}

export function formatApps(rows: AppRow[]): string {
  if (rows.length === 0) return "no apps yet: tcli push <dir> publishes one\n";
  return table(
    ["NAME", "UUID", "ENVS", "STATE", "VERSION", "URL"],
    rows.map((r) => [r.name, r.uuid, r.environments.join(","), r.state, r.version ?? "-", r.url]),
  );
}

export function formatStatus(s: AppStatus): string {
  const lines = [
    `${s.app.name} (${s.app.uuid}), tenant ${s.app.tenant}`,
    `  url           ${s.url}`,
    `  environments  ${s.app.environments.join(", ")}`,
    `  runtime       ${s.app.runtime}`,
  ];
  const d = s.last_deploy;
  lines.push(
    d
      ? `  last deploy   ${d.id} ${d.state}${typeof d.created_at === "string" ? ` (${d.created_at})` : ""}`
      : "  last deploy   none",
  );
  lines.push("");
  if (s.targets.length === 0) {
    lines.push("no targets: the app runs nowhere yet (tcli push it, then start it on a supervisor)");
    return `${lines.join("\n")}\n`;
  }
  const rows = s.targets.map((t) => {
    const says = t.supervisor_says ?? {};
    const state =
      typeof says.state === "string"
        ? says.state
        : typeof says.error === "string"
          ? `? (${says.error})`
          : "-";
    const str = (k: string) =>
      typeof says[k] === "string" || typeof says[k] === "number" ? String(says[k]) : "-";
    return [
      t.supervisor,
      t.on_roster ? "yes" : "no",
      t.runner_on_roster ? "running" : "not running",
      state,
      str("restarts"),
      str("version"),
      t.runner_last_seen ?? "-",
      t.last_deploy ? `${t.last_deploy.id} ${t.last_deploy.success ? "ok" : "failed"}` : "-",
    ];
  });
  return `${lines.join("\n")}\n${table(["TARGET", "ON ROSTER", "RUNNER", "STATE", "RESTARTS", "VERSION", "SEEN", "LAST DEPLOY"], rows)}`;
}

export function formatOperation(r: AppOperation): string {
  if (r.targets.length === 0)
    return `${r.app}: no targets to ${r.action} (it runs nowhere this node knows of)\n`;
  const rows = r.targets.map((t) => [t.supervisor, t.ok ? "ok" : "failed", t.state ?? "-", t.error ?? ""]);
  const tails = r.targets
    .filter((t) => t.log_tail && t.log_tail.length > 0)
    .map(
      (t) =>
        `\nlast lines of the app's log on ${t.supervisor}:\n${(t.log_tail ?? []).map((l) => `  ${l}`).join("\n")}\n`,
    );
  return `${r.action} ${r.app} (${r.environment})\n${table(["TARGET", "RESULT", "STATE", "ERROR"], rows)}${tails.join("")}`;
}

export function formatRemove(r: RemoveResult): string {
  const artifacts = r.artifacts
    ? `deleted ${r.artifacts.versions.length} version${r.artifacts.versions.length === 1 ? "" : "s"} of it from ${r.artifacts.store}`
    : "its versions stay in the artifact store (tcli rm --artifacts deletes them)";
  return `${formatOperation(r.purge)}removed ${r.purge.app} from the registry; ${artifacts}\n`;
}
