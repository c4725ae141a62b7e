import { useEffect, useState } from "preact/hooks";
import { type AppDeployStatus, appDeploy, appDeployEvents } from "../../../node/views-client.js";
import type { DeployEvent } from "../../../pipeline/executor.js";
import { node, streamLines } from "../api";
import { Short, StatusBadge, When } from "../components/status";

interface Step {
  name: string;
  state: "running" | "succeeded" | "failed";
  started: string;
  ended?: string;
  lines: string[];
}

/** Folds the deploy's events into its steps, in the order they started. */
export function stepsOf(events: DeployEvent[]): Step[] {
  const steps = new Map<string, Step>();
  for (const e of events) {
    if (e.step === "deploy") continue;
    let step = steps.get(e.step);
    if (!step) {
      step = { name: e.step, state: "running", started: e.ts, lines: [] };
      steps.set(e.step, step);
    }
    if (e.type === "step_finished") step.state = "succeeded";
    if (e.type === "step_failed") step.state = "failed";
    if (e.type === "step_finished" || e.type === "step_failed") step.ended = e.ts;
    if (e.message) step.lines.push(e.message);
  }
  return [...steps.values()];
}

/**
 * Follows `/api/v1/apps/:app/deploys/:id/events` (SSE framing read off a fetch stream, so it can
 * stop when the deploy ends instead of reconnecting): a finished deploy replays, a running one
 * arrives live; a dropped stream resumes after the last event seen.
 */
function useDeployEvents(app: string, id: string): { events: DeployEvent[]; ended: boolean } {
  const [events, setEvents] = useState<DeployEvent[]>([]);
  const [ended, setEnded] = useState(false);
  useEffect(() => {
    const controller = new AbortController();
    let last = 0;
    let done = false;
    let batch: DeployEvent[] = [];
    let flush: ReturnType<typeof setTimeout> | undefined;
    const take = (line: string) => {
      if (!line.startsWith("data: ")) return;
      const event = JSON.parse(line.slice(6)) as DeployEvent;
      if (event.seq <= last) return;
      last = event.seq;
      if (event.step === "deploy" && event.type.startsWith("deploy_")) done = true;
      batch.push(event);
      flush ??= setTimeout(() => {
        const add = batch;
        batch = [];
        flush = undefined;
        setEvents((prev) => [...prev, ...add]);
      }, 50);
    };
    const follow = async () => {
      while (!done && !controller.signal.aborted) {
        try {
          await streamLines(await appDeployEvents(node, app, id, last), take, controller.signal);
        } catch {
          if (controller.signal.aborted) return;
        }
        if (!done) await new Promise((r) => setTimeout(r, 1000));
      }
      if (!controller.signal.aborted) setEnded(true);
    };
    void follow();
    return () => {
      controller.abort();
      if (flush) clearTimeout(flush);
    };
  }, [app, id]);
  return { events, ended };
}

export function DeployPage({ app, id }: { app: string; id: string }) {
  const { events, ended } = useDeployEvents(app, id);
  const [status, setStatus] = useState<AppDeployStatus | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    appDeploy(node, app, id)
      .then(setStatus)
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
  }, [app, id, ended]);

  if (error) {
    return (
      <section>
        <h1>Deploy {id.slice(0, 8)}</h1>
        <p role="alert" class="error">
          {error}
        </p>
      </section>
    );
  }
  const steps = stepsOf(events);
  const failedStep = steps.find((s) => s.state === "failed");
  return (
    <section>
      <div class="row">
        <h1>Deploy {id.slice(0, 8)}</h1>
        <StatusBadge state={ended && status?.done ? status.state : "running"} />
        <a href={`/apps/${encodeURIComponent(app)}`}>{app}</a>
      </div>
      {status ? (
        <dl class="kv">
          <dt>trigger</dt>
          <dd>
            {status.trigger} {status.ref}
          </dd>
          <dt>started</dt>
          <dd>
            <When at={status.created_at} />
          </dd>
          <dt>finished</dt>
          <dd>
            <When at={status.finished_at} />
          </dd>
          <dt>digest</dt>
          <dd>
            <Short value={status.digest} />
          </dd>
        </dl>
      ) : null}
      {ended && status?.error ? (
        <div class="card failure" role="alert">
          <h2>Failed at {status.error.step}</h2>
          <p>
            <code>{status.error.code}</code> {status.error.message}
          </p>
          {failedStep && failedStep.lines.length > 0 ? (
            <pre class="log">{failedStep.lines.slice(-30).join("\n")}</pre>
          ) : null}
        </div>
      ) : null}
      <h2>Steps</h2>
      {steps.length === 0 ? <p class="muted">Waiting for the first step…</p> : null}
      <ol class="timeline">
        {steps.map((s) => (
          <li key={s.name} data-state={s.state} data-step={s.name}>
            <div class="row">
              <strong>{s.name}</strong>
              <StatusBadge state={s.state} />
              <span class="muted">
                <When at={s.started} />
              </span>
            </div>
            {s.lines.length > 0 ? (
              <details open={s.state !== "succeeded"}>
                <summary>{s.lines.length} log lines</summary>
                <pre class="log">{s.lines.slice(-200).join("\n")}</pre>
              </details>
            ) : null}
          </li>
        ))}
      </ol>
      {status && status.results.length > 0 ? (
        <>
          <h2>Rollout</h2>
          <ul class="plain">
            {status.results.map((r) => (
              <li key={r.supervisor} data-target={r.supervisor}>
                <strong>{r.supervisor}</strong> <StatusBadge state={r.success ? "succeeded" : "failed"} />
                {r.error ? <span class="error"> {r.error}</span> : null}
                {r.log_tail && r.log_tail.length > 0 ? <pre class="log">{r.log_tail.join("\n")}</pre> : null}
              </li>
            ))}
          </ul>
        </>
      ) : null}
    </section>
  );
}
