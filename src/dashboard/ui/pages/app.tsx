import type { NodeApp } from "../../../node/client.js";
import { promote, rollback } from "../../../node/releases-client.js";
import { appDeploys, environments, envNames } from "../../../node/views-client.js";
import { node } from "../api";
import { ConfirmButton } from "../components/confirm-button";
import { LogTail } from "../components/log-tail";
import { Short, StatusBadge, When } from "../components/status";
import { usePoll } from "../components/use-poll";
import { healthOf } from "./apps";

const EVERY_MS = 4000;

/** One app: actions, environments with release history, env names, live logs and deploys. */
export function AppPage({ app }: { app: string }) {
  const record = usePoll(app, () => node.app(app), 15_000);
  const runtime = usePoll(app, () => node.runtimeStatus(app), EVERY_MS).data;
  if (record.error && !record.data) {
    return (
      <section>
        <h1>{app}</h1>
        <p role="alert" class="error">
          {record.error}
        </p>
      </section>
    );
  }
  const a = record.data;
  if (!a) return <p class="muted">Loading…</p>;
  const health = healthOf(runtime);
  const op = (name: "restart" | "stop" | "start") => async () => {
    const res = await node.operate(app, name);
    return `${name}: ${res.targets.map((t) => `${t.supervisor} ${t.ok ? "ok" : "failed"}`).join(", ") || "no targets"}`;
  };
  return (
    <section>
      <div class="row">
        <h1>{a.name}</h1>
        <StatusBadge state={health.state} />
        <span class="muted">
          tenant {a.tenant} · restarts {health.restarts}
        </span>
      </div>
      <p>
        <a href={`/app/${a.uuid}/`}>Open the app (/app/{a.uuid}/)</a>
      </p>
      <div class="actions">
        <ConfirmButton label="Restart" question={`Restart ${a.name} on every target?`} run={op("restart")} />
        <ConfirmButton
          label="Stop"
          tone="danger"
          question={`Stop ${a.name} on every target?`}
          run={op("stop")}
        />
        <ConfirmButton label="Start" question={`Start ${a.name} again?`} run={op("start")} />
      </div>
      <EnvironmentsSection app={a} />
      <EnvNames app={a.name} environments={a.environments} />
      <h2>Logs</h2>
      <LogTail app={a.name} tail={100} />
      <DeploysSection app={a.name} />
    </section>
  );
}

function EnvironmentsSection({ app }: { app: NodeApp }) {
  const { data } = usePoll(app.name, () => environments(node, app.name), EVERY_MS);
  if (!data) return null;
  const names = data.environments.map((e) => e.name);
  return (
    <>
      <h2>Environments</h2>
      {data.environments.map((env, i) => {
        const next = names[i + 1];
        return (
          <div class="card env" key={env.name} data-env={env.name}>
            <div class="row">
              <h3>{env.name}</h3>
              {env.current ? (
                <span>
                  runs <Short value={env.current.digest} /> since <When at={env.current.started_at} />
                </span>
              ) : (
                <span class="muted">nothing running</span>
              )}
            </div>
            <div class="actions">
              {next && env.current ? (
                <ConfirmButton
                  label={`Promote to ${next}`}
                  question={`Roll ${env.name}'s release ${env.current.digest.slice(7, 19)} out to ${next}?`}
                  run={async () => {
                    const r = await promote(node, app.name, { from: env.name, to: next }, true);
                    return `promoted to ${next} (deploy ${r.deploy_id.slice(0, 8)})`;
                  }}
                />
              ) : null}
              {env.runs.length > 1 ? (
                <ConfirmButton
                  label={`Roll back ${env.name}`}
                  tone="danger"
                  question={`Put ${env.name} of ${app.name} back on the release it ran before?`}
                  run={async () => {
                    const r = await rollback(node, app.name, { env: env.name }, true);
                    return `rolled back to ${r.release.digest.slice(7, 19)}`;
                  }}
                />
              ) : null}
            </div>
            {env.runs.length > 0 ? (
              <div class="table-wrap">
                <table>
                  <caption class="muted">Releases {env.name} ran, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">Release</th>
                      <th scope="col">Source</th>
                      <th scope="col">Since</th>
                      <th scope="col">Deploy</th>
                    </tr>
                  </thead>
                  <tbody>
                    {env.runs.map((r) => (
                      <tr key={`${r.release_id}-${r.started_at}`}>
                        <td>
                          <Short value={r.digest} />
                        </td>
                        <td>{r.source.artifact_version ?? <Short value={r.source.commit_sha ?? null} />}</td>
                        <td>
                          <When at={r.started_at} />
                        </td>
                        <td>
                          {r.deploy_id ? (
                            <a href={`/apps/${encodeURIComponent(app.name)}/deploys/${r.deploy_id}`}>
                              {r.deploy_id.slice(0, 8)}
                            </a>
                          ) : (
                            "–"
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ) : null}
          </div>
        );
      })}
    </>
  );
}

/** Names only: the node never sends a value to a browser (it would need ?reveal and the node key). */
function EnvNames({ app, environments }: { app: string; environments: string[] }) {
  const first = environments[0];
  const { data } = usePoll(first ? `${app}/${first}` : null, () => envNames(node, app, first ?? ""), 30_000);
  if (!data) return null;
  return (
    <>
      <h2>Environment variables ({data.environment})</h2>
      {data.vars.length === 0 ? (
        <p class="muted">None set.</p>
      ) : (
        <ul class="names">
          {data.vars.map((v) => (
            <li key={v}>
              <code>{v}</code>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function DeploysSection({ app }: { app: string }) {
  const { data } = usePoll(app, () => appDeploys(node, app, 20), EVERY_MS);
  if (!data) return null;
  return (
    <>
      <h2>Deploys</h2>
      {data.deploys.length === 0 ? <p class="muted">None yet.</p> : null}
      <ul class="plain">
        {data.deploys.map((d) => (
          <li key={d.id}>
            <a href={`/apps/${encodeURIComponent(app)}/deploys/${d.id}`}>
              <StatusBadge state={d.status} /> {d.trigger} {d.ref ?? ""}
            </a>{" "}
            <When at={d.created_at} />
            {d.error ? <span class="error"> {d.error.message}</span> : null}
          </li>
        ))}
      </ul>
    </>
  );
}
