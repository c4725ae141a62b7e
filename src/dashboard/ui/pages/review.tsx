import { useState } from "preact/hooks";
import type { GrantView, PlanView } from "../../../node/deploy-review-store.js";
import {
  approvePlan,
  grants as grantsOf,
  plan as planOf,
  rejectPlan,
  revokeGrant,
} from "../../../node/review-client.js";
import { node } from "../api";
import { ConfirmButton } from "../components/confirm-button";
import { Short, StatusBadge, When } from "../components/status";
import { usePoll } from "../components/use-poll";
import { lineDiff, prettyJson } from "../lib/line-diff";
import "./pages-b.css";

/**
 * A plan's review (the `reviewUrl` a deploy answers with): what the proposed contract adds over
 * the baseline, each reason covered or not by a standing grant, and the three decisions. The
 * project's grants are listed below with revoke.
 */
export function ReviewPage({ id }: { id: string }) {
  const [tick, setTick] = useState(0);
  const { data: plan, error } = usePoll<PlanView>(`${id}/${tick}`, () => planOf(node, id), 5000);
  const refresh = () => setTick((t) => t + 1);
  const decide = async (what: () => Promise<unknown>, said: string) => {
    await what();
    refresh();
    return said;
  };
  return (
    <section>
      <h1>Review plan</h1>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {!plan ? (
        <p class="muted">Loading…</p>
      ) : (
        <>
          <div class="row">
            <StatusBadge state={plan.status} />
            <span>
              project <strong>{plan.projectName}</strong> · region {plan.region}
            </span>
          </div>
          <dl class="kv">
            <dt>created</dt>
            <dd>
              <When at={plan.createdAt} />
            </dd>
            <dt>expires</dt>
            <dd>
              <When at={plan.expiresAt} />
            </dd>
            {plan.decidedBy ? (
              <>
                <dt>decided by</dt>
                <dd>
                  {plan.decidedBy} ({plan.mode})
                </dd>
              </>
            ) : null}
          </dl>
          <div class="contract">
            <div class="card">
              <h2>Baseline contract</h2>
              {plan.baselineSha ? (
                <Short value={plan.baselineSha} />
              ) : (
                <p class="muted">none: first deploy</p>
              )}
              <ContractBody value={plan.baselineContract} label="baseline contract" />
            </div>
            <div class="card">
              <h2>Proposed contract</h2>
              <Short value={plan.proposedSha} />
              <ContractBody value={plan.proposedContract} label="proposed contract" />
            </div>
          </div>
          {plan.proposedContract !== undefined ? (
            <ContractDiff before={plan.baselineContract} after={plan.proposedContract} />
          ) : (
            <p class="muted">This plan predates stored contracts: only their digests are known.</p>
          )}
          <h2>What it adds</h2>
          <ul class="plain" aria-label="reasons">
            {plan.diff.reasons.map((r) => {
              const covered = plan.grantCoverage.coveredReasons.includes(r);
              return (
                <li key={r} data-covered={covered}>
                  <span class={`badge ${covered ? "ok" : "warn"}`}>{covered ? "covered" : "uncovered"}</span>{" "}
                  {r}
                </li>
              );
            })}
          </ul>
          {plan.status === "pending" ? (
            <div class="actions">
              <ConfirmButton
                label="Approve once"
                question="Approve this plan for one deploy?"
                run={() => decide(() => approvePlan(node, id, "once"), "approved once")}
              />
              <ConfirmButton
                label="Approve and grant"
                question="Approve, and grant these reasons to the project for later deploys?"
                tone="secondary"
                run={() => decide(() => approvePlan(node, id, "grant"), "approved, grant created")}
              />
              <ConfirmButton
                label="Reject"
                question="Reject this plan?"
                tone="danger"
                run={() => decide(() => rejectPlan(node, id), "rejected")}
              />
            </div>
          ) : null}
          <Grants project={plan.projectName} tick={tick} onChange={refresh} />
        </>
      )}
    </section>
  );
}

/** A contract's JSON as text: Preact sets it as a text node, so nothing in it is markup. */
function ContractBody({ value, label }: { value: unknown; label: string }) {
  if (value === undefined || value === null) return null;
  return (
    <section aria-label={label}>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling block must be reachable by keyboard. */}
      <pre tabIndex={0}>{prettyJson(value)}</pre>
    </section>
  );
}

function ContractDiff({ before, after }: { before: unknown; after: unknown }) {
  const lines = lineDiff(prettyJson(before), prettyJson(after));
  return (
    <>
      <h2>Contract changes</h2>
      {lines === undefined ? (
        <p class="muted">Too long to compare here.</p>
      ) : (
        <section aria-label="contract changes">
          {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling block must be reachable by keyboard. */}
          <pre class="diff" tabIndex={0}>
            {lines.map((l, i) => (
              <span key={i} class={`diff-${l.kind}`}>
                {l.kind === "add" ? "+ " : l.kind === "del" ? "- " : "  "}
                {l.text}
                {"\n"}
              </span>
            ))}
          </pre>
        </section>
      )}
    </>
  );
}

function Grants({ project, tick, onChange }: { project: string; tick: number; onChange: () => void }) {
  const { data: grants } = usePoll<GrantView[]>(`${project}/${tick}`, () => grantsOf(node, project), 5000);
  const data = grants ? { grants } : undefined;
  return (
    <>
      <h2>Grants of {project}</h2>
      {!data ? <p class="muted">Loading…</p> : null}
      {data && data.grants.length === 0 ? <p class="muted">No grants.</p> : null}
      <ul class="plain">
        {data?.grants.map((g) => (
          <li key={g.id} class="card" data-grant={g.id}>
            <div class="row">
              <StatusBadge state={g.status === "active" ? "ok" : g.status} />
              <Short value={g.id} /> <When at={g.createdAt} />
              {g.status === "active" ? (
                <ConfirmButton
                  label="Revoke"
                  question="Revoke this grant? Later deploys that need it will ask for review again."
                  tone="danger"
                  run={async () => {
                    await revokeGrant(node, g.id);
                    onChange();
                    return "revoked";
                  }}
                />
              ) : null}
            </div>
            <ul>
              {g.reasons.map((r) => (
                <li key={r}>{r}</li>
              ))}
            </ul>
          </li>
        ))}
      </ul>
    </>
  );
}
