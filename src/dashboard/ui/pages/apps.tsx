import type { NodeApp, RuntimeStatus } from "../../../node/client.js";
import { appDeploys, environments } from "../../../node/views-client.js";
import { node } from "../api";
import { PollState } from "../components/poll-state";
import { Short, StatusBadge, When } from "../components/status";
import { usePoll } from "../components/use-poll";

const EVERY_MS = 5000;

/** Every app the session may see (a tenant sees its own), each card refreshing on its own. */
export function AppsPage() {
  const { data: apps, error } = usePoll("apps", () => node.apps(), EVERY_MS);
  return (
    <section>
      <h1>Apps</h1>
      <PollState
        error={error}
        loaded={apps !== undefined}
        count={apps?.length ?? 0}
        empty="No apps yet: push one with git push or tcli push."
      />
      {apps && apps.length > 0 ? (
        <ul class="cards">
          {apps.map((a) => (
            <AppCard key={a.uuid} app={a} />
          ))}
        </ul>
      ) : null}
    </section>
  );
}

/**
 * What a runtime status says about health and restarts, summed over the app's targets. The
 * supervisor's own view is passed through by the node untyped, so each field is checked here.
 */
export function healthOf(status: RuntimeStatus | undefined): { state: string; restarts: number } {
  if (!status) return { state: "unknown", restarts: 0 };
  let restarts = 0;
  const states = new Set<string>();
  for (const t of status.targets) {
    const says = t.supervisor_says;
    const count = says?.restart_count ?? says?.restarts;
    restarts += typeof count === "number" ? count : 0;
    if (!says || says.error) states.add(t.on_roster ? "unknown" : "down");
    else if (says.restart_status === "crashloop" || says.app_health === "unhealthy") states.add("unhealthy");
    else states.add(typeof says.state === "string" ? says.state : "unknown");
  }
  for (const worst of ["unhealthy", "down", "stopped", "unknown", "running"]) {
    if (states.has(worst)) return { state: worst, restarts };
  }
  return { state: status.targets.length === 0 ? "not deployed" : "unknown", restarts };
}

function AppCard({ app }: { app: NodeApp }) {
  const envs = usePoll(app.name, () => environments(node, app.name), EVERY_MS).data;
  const runtime = usePoll(app.name, () => node.runtimeStatus(app.name), EVERY_MS).data;
  const last = usePoll(app.name, () => appDeploys(node, app.name, 1), EVERY_MS).data?.deploys[0];
  const health = healthOf(runtime);
  return (
    <li class="card" data-app={app.name}>
      <div class="row">
        <h2 class="card-title">
          <a href={`/apps/${encodeURIComponent(app.name)}`}>{app.name}</a>
        </h2>
        <StatusBadge state={health.state} />
        <span class="muted">tenant {app.tenant}</span>
      </div>
      <dl class="kv">
        {(envs?.environments ?? app.environments.map((name) => ({ name, current: null }))).map((e) => (
          <>
            <dt key={`${e.name}-k`}>{e.name}</dt>
            <dd key={`${e.name}-v`}>
              {e.current ? <Short value={e.current.digest} /> : <span class="muted">nothing running</span>}
            </dd>
          </>
        ))}
        <dt>restarts</dt>
        <dd>{health.restarts}</dd>
        <dt>URL</dt>
        <dd>
          <a href={`/app/${app.uuid}/`}>/app/{app.uuid.slice(0, 8)}…/</a>
        </dd>
        <dt>last deploy</dt>
        <dd>
          {last ? (
            <a href={`/apps/${encodeURIComponent(app.name)}/deploys/${last.id}`}>
              <StatusBadge state={last.status} /> <When at={last.finished_at ?? last.created_at} />
            </a>
          ) : (
            <span class="muted">none yet</span>
          )}
        </dd>
      </dl>
    </li>
  );
}
