import { registryCatalog } from "../../../node/views-client.js";
import { node } from "../api";
import { PollState } from "../components/poll-state";
import { Short } from "../components/status";
import { usePoll } from "../components/use-poll";
import "./pages-b.css";

const kindTone: Record<string, string> = { signature: "ok", proof: "ok", release: "warn" };

/**
 * The platform registry as the session's tenant sees it: one card per repository the node pushed
 * for its apps and handler projects, each tagged digest with what refers to it (release
 * manifests, proofs, signatures).
 */
export function RegistryPage() {
  const { data, error } = usePoll("catalog", () => registryCatalog(node), 15_000);
  return (
    <section>
      <h1>Registry</h1>
      <PollState
        error={error}
        loaded={data !== undefined}
        count={data?.repositories.length ?? 0}
        empty="No repositories yet."
      />
      <ul class="cards">
        {data?.repositories.map((r) => (
          <li key={r.repository} class="card" data-repository={r.repository}>
            <h2 class="card-title">{r.name}</h2>
            <p class="muted">
              <code>{r.repository}</code> · {r.kind} · tenant {r.tenant}
            </p>
            {r.error ? (
              <p role="alert" class="error">
                {r.error}
              </p>
            ) : null}
            {!r.error && r.tags.length === 0 ? <p class="muted">No tags.</p> : null}
            {r.manifests.map((m) => (
              <div key={m.digest} class="manifest" data-digest={m.digest}>
                <div class="row">
                  <Short value={m.digest} />
                  {m.tags.map((t) => (
                    <span key={t} class="badge">
                      {t}
                    </span>
                  ))}
                </div>
                {m.referrers.length === 0 ? (
                  <p class="muted">No referrers.</p>
                ) : (
                  <ul class="plain" aria-label={`referrers of ${m.digest}`}>
                    {m.referrers.map((ref) => (
                      <li key={ref.digest} data-kind={ref.kind}>
                        <span class={`badge ${kindTone[ref.kind] ?? ""}`}>{ref.kind}</span>{" "}
                        <Short value={ref.digest} />{" "}
                        <span class="muted">{ref.artifactType ?? "(no artifact type)"}</span>
                      </li>
                    ))}
                  </ul>
                )}
              </div>
            ))}
          </li>
        ))}
      </ul>
    </section>
  );
}
