import { useEffect, useState } from "preact/hooks";
import { firstBroken, judgeRows, type RowVerdict } from "../../../core/audit-recipe.js";
import {
  type AuditEventsPage,
  type AuditVerdict,
  auditEvents,
  auditVerify,
} from "../../../node/views-client.js";
import { node as client, TabbifyError } from "../api";
import { When } from "../components/status";
import { useSession } from "../session";
import "./pages-b.css";

/** SHA-256 in the browser (WebCrypto), lowercase hex: the node's recipe, recomputed here. */
async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const PAGE = 50;

/**
 * The audit chain (node key), newest first, a page at a time, filtered by actor, action and app.
 * Two verdicts: the browser's, recomputed with WebCrypto from the rows shown, and the node's own
 * over the whole chain. The first broken row is shown in red.
 */
export function AuditPage() {
  if (useSession().session?.tenant) {
    return (
      <section>
        <h1>Audit</h1>
        <p role="alert" class="error">
          The audit chain spans every tenant: log in with the node key to see it.
        </p>
      </section>
    );
  }
  return <AuditChain />;
}

function AuditChain() {
  const [filter, setFilter] = useState({ actor: "", action: "", app: "" });
  const [draft, setDraft] = useState(filter);
  const [cursors, setCursors] = useState<number[]>([]);
  const [page, setPage] = useState<AuditEventsPage | undefined>(undefined);
  const [verdicts, setVerdicts] = useState<Map<number, RowVerdict> | undefined>(undefined);
  const [node, setNode] = useState<AuditVerdict | undefined>(undefined);
  const [error, setError] = useState("");
  const before = cursors.at(-1);

  useEffect(() => {
    const controller = new AbortController();
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (before !== undefined) q.set("before", String(before));
    for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
    setPage(undefined);
    setVerdicts(undefined);
    (async () => {
      try {
        const [events, verdict] = await Promise.all([auditEvents(client, q), auditVerify(client)]);
        setPage(events);
        setNode(verdict);
        setError("");
        if (controller.signal.aborted) return;
        setVerdicts(await judgeRows(events.events, sha256Hex));
      } catch (err) {
        if (!controller.signal.aborted)
          setError(err instanceof TabbifyError ? err.message : "the node did not answer");
      }
    })();
    return () => controller.abort();
  }, [before, filter]);

  const broken = verdicts ? firstBroken(verdicts) : undefined;
  const browserOk = verdicts !== undefined && broken === undefined;
  return (
    <section>
      <h1>Audit</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setCursors([]);
          setFilter(draft);
        }}
      >
        {(["actor", "action", "app"] as const).map((name) => (
          <label key={name}>
            {name}
            <input
              name={name}
              value={draft[name]}
              onInput={(e) => setDraft({ ...draft, [name]: (e.target as HTMLInputElement).value })}
            />
          </label>
        ))}
        <button type="submit">Filter</button>
      </form>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      <div class="row verdicts" aria-live="polite">
        <span
          data-testid="browser-verdict"
          class={`badge ${verdicts === undefined ? "warn" : browserOk ? "ok" : "bad"}`}
        >
          {verdicts === undefined
            ? "checking…"
            : browserOk
              ? `verified in this browser (${verdicts.size} rows)`
              : `broken at seq ${broken?.seq} (this browser)`}
        </span>
        <span
          data-testid="node-verdict"
          class={`badge ${node === undefined ? "warn" : node.ok ? "ok" : "bad"}`}
        >
          {node === undefined
            ? "node: checking…"
            : node.ok
              ? `verified by the node (${node.count} events)`
              : `node: broken at seq ${node.broken?.seq}: ${node.broken?.reason}`}
        </span>
      </div>
      {broken?.reason ? (
        <p class="error">
          seq {broken.seq}: {broken.reason}
        </p>
      ) : null}
      {!page ? <p class="muted">Loading…</p> : null}
      {page && page.events.length === 0 ? <p class="muted">No events match.</p> : null}
      {page && page.events.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption>Audit events, newest first</caption>
            <thead>
              <tr>
                <th scope="col">seq</th>
                <th scope="col">when</th>
                <th scope="col">actor</th>
                <th scope="col">action</th>
                <th scope="col">subject</th>
                <th scope="col">hash</th>
              </tr>
            </thead>
            <tbody>
              {page.events.map((e) => {
                const v = verdicts?.get(e.seq);
                const bad = v !== undefined && (!v.hashOk || v.linkOk === false);
                return (
                  <tr key={e.seq} class={bad ? "broken" : undefined} data-seq={e.seq}>
                    <td>{e.seq}</td>
                    <td>
                      <When at={e.at} />
                    </td>
                    <td>{e.actor}</td>
                    <td>{e.action}</td>
                    <td class="wrap">{e.subject}</td>
                    <td>
                      <code title={e.event_hash}>{e.event_hash.slice(0, 10)}</code>{" "}
                      {v === undefined ? null : bad ? (
                        <span class="badge bad">broken</span>
                      ) : (
                        <span class="badge ok">ok</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
      <div class="actions">
        <button
          type="button"
          class="secondary"
          disabled={cursors.length === 0}
          onClick={() => setCursors(cursors.slice(0, -1))}
        >
          Newer
        </button>
        <button
          type="button"
          class="secondary"
          disabled={page?.next_before === undefined}
          onClick={() => page?.next_before !== undefined && setCursors([...cursors, page.next_before])}
        >
          Older
        </button>
      </div>
    </section>
  );
}
