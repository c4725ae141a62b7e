/**
 * Runs `work` over `items` with at most `limit` (at least 1) at once. The first failure stops
 * new work and is thrown only once the items already started have settled, so nothing is still
 * running (or writing) when the caller goes on to clean up.
 */
export async function runPool<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const workers = Math.min(Math.max(1, Math.floor(limit)), items.length);
  const settled = await Promise.allSettled(Array.from({ length: workers }, worker));
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected) throw rejected.reason;
}
