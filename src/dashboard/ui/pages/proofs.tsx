import { factPropertyNames, type ProofRow } from "../../../contract/types.js";
import { changeLines, routeLabel, type Verdict, verdictOf } from "../../../contract/verdict.js";
import { projectProofs, projects } from "../../../node/views-client.js";
import { node } from "../api";
import { PollState } from "../components/poll-state";
import { Short } from "../components/status";
import { usePoll } from "../components/use-poll";
import "./pages-b.css";

const verdictTone: Record<Verdict, string> = { safe: "ok", safe_with_additions: "warn", breaking: "bad" };

/** The handler projects with proof rows (the caller's tenant only), each a link to its ledger. */
export function ProofsPage() {
  const { data, error } = usePoll("projects", () => projects(node), 10_000);
  return (
    <section>
      <h1>Proofs</h1>
      <PollState
        error={error}
        loaded={data !== undefined}
        count={data?.projects.length ?? 0}
        empty="No proof rows yet: a handler deploy (tcli deploy) records one per release."
      />
      <ul class="cards">
        {data?.projects.map((p) => (
          <li key={p.name} class="card">
            <h2 class="card-title">
              <a href={`/proofs/${encodeURIComponent(p.name)}`}>{p.name}</a>
            </h2>
            <p class="muted">
              {p.proofs} proof {p.proofs === 1 ? "row" : "rows"}, last{" "}
              <time dateTime={new Date(p.last_ts).toISOString()}>{new Date(p.last_ts).toLocaleString()}</time>
            </p>
          </li>
        ))}
      </ul>
    </section>
  );
}

/**
 * One project's proof ledger, newest first: per release its verdict against the one before,
 * proof level, proven properties, surface (routes, env names, egress hosts, cache namespaces,
 * capabilities) and what changed. The verdict is computed here by the same code as `tcli proofs`.
 */
export function ProjectProofsPage({ project }: { project: string }) {
  const { data, error } = usePoll(project, () => projectProofs(node, project), 10_000);
  const rows = data?.rows ?? [];
  return (
    <section>
      <h1>Proofs of {project}</h1>
      <PollState
        error={error}
        loaded={data !== undefined}
        count={rows.length}
        empty="No proof rows for this project."
      />
      <ol class="cards plain" reversed aria-label="proof rows">
        {rows
          .map((row, i) => <ProofCard key={`${row.ts}-${i}`} row={row} previous={rows[i - 1]} />)
          .reverse()}
      </ol>
    </section>
  );
}

function ProofCard({ row, previous }: { row: ProofRow; previous: ProofRow | undefined }) {
  const f = row.facts;
  const { verdict, delta } = verdictOf(previous?.facts, f);
  const proven = factPropertyNames.filter((p) => f.properties[p]);
  const changes = changeLines(delta);
  const list = (xs: string[]) => (xs.length > 0 ? xs.join(", ") : "(none)");
  return (
    <li class="card" data-proof={f.contractSha}>
      <div class="row">
        <span class={`badge ${verdictTone[verdict]}`} data-verdict={verdict}>
          {verdict}
        </span>
        <strong>{row.kind}</strong>
        <time dateTime={new Date(row.ts).toISOString()}>{new Date(row.ts).toLocaleString()}</time>
        <Short value={f.contractSha} />
      </div>
      <dl class="kv">
        <dt>handler</dt>
        <dd>
          <code>{row.handlerPath}</code>
          {row.serviceName ? ` (${row.serviceName})` : null}
        </dd>
        <dt>proof level</dt>
        <dd>{f.proofLevel}</dd>
        <dt>proven</dt>
        <dd>
          {proven.length === 0 ? (
            <span class="muted">(none)</span>
          ) : (
            <ul class="chips" aria-label="proven properties">
              {proven.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          )}
        </dd>
        <dt>routes</dt>
        <dd>{list(f.routes.map(routeLabel))}</dd>
        <dt>env</dt>
        <dd>{list(f.envKeys)}</dd>
        <dt>egress</dt>
        <dd>{list(f.egressHosts)}</dd>
        <dt>cache</dt>
        <dd>{list(f.cacheNamespaces)}</dd>
        <dt>capabilities</dt>
        <dd>{list(f.capabilities)}</dd>
      </dl>
      <h3>{previous ? `Against ${previous.facts.contractSha.slice(0, 8)}` : "No earlier proof"}</h3>
      {previous ? (
        changes.length === 0 ? (
          <p class="muted">No change.</p>
        ) : (
          <ul class="plain changes" aria-label="changes">
            {changes.map((c) => (
              <li key={c} class={c.startsWith("-") ? "diff-del" : c.startsWith("+") ? "diff-add" : ""}>
                {c}
              </li>
            ))}
          </ul>
        )
      ) : null}
    </li>
  );
}
