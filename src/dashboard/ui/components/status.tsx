/** A coloured word for a state: green when done well, amber while moving, red when it failed. */
export function StatusBadge({ state }: { state: string }) {
  const tone = /^(succeeded|ok|running|healthy|passed)$/.test(state)
    ? "ok"
    : /^(failed|crashloop|unhealthy|error|stopped|down)$/.test(state)
      ? "bad"
      : "warn";
  return <span class={`badge ${tone}`}>{state}</span>;
}

/** `2026-12-06T03:04:10.123Z` as local time, short. */
export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <span class="muted">–</span>;
  const d = new Date(at);
  return (
    <time dateTime={at}>{d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" })}</time>
  );
}

/** A digest or id, shortened, with the whole of it on hover. */
export function Short({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="muted">–</span>;
  const short = value.startsWith("sha256:") ? value.slice(7, 19) : value.slice(0, 12);
  return (
    <code title={value} class="short">
      {short}
    </code>
  );
}
