import { usePoll } from "../components/use-poll";
import type { RegistryApp } from "../types";

/** Every app the session may see (a tenant sees its own). */
export function AppsPage() {
  const { data, error } = usePoll<{ apps: RegistryApp[] }>("/api/v1/apps", 5000);
  return (
    <section>
      <h1>Apps</h1>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {!data ? <p class="muted">Loading…</p> : null}
      {data && data.apps.length === 0 ? <p class="muted">No apps yet: push one with tcli push.</p> : null}
      {data && data.apps.length > 0 ? (
        <ul class="cards">
          {data.apps.map((a) => (
            <li key={a.uuid} class="card">
              <a href={`/apps/${encodeURIComponent(a.name)}`}>{a.name}</a>
              <span class="muted"> {a.tenant}</span>
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
