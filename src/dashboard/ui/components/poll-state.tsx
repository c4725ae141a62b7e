/**
 * What a polled list shows above its items: the error, "Loading…" until the first answer, or
 * `empty` once an answer came with nothing in it.
 */
export function PollState({
  error,
  loaded,
  count,
  empty,
}: {
  error: string;
  loaded: boolean;
  count: number;
  empty: string;
}) {
  return (
    <>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {!loaded && !error ? <p class="muted">Loading…</p> : null}
      {loaded && count === 0 ? <p class="muted">{empty}</p> : null}
    </>
  );
}
