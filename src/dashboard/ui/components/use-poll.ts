import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "../api";

/** GETs `path` now and every `everyMs` while the page shows; the latest answer or error. */
export function usePoll<T>(path: string | null, everyMs: number): { data: T | undefined; error: string } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    if (path === null) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = new AbortController();
    const tick = async () => {
      try {
        const next = await api<T>(path, { signal: controller.signal });
        if (stopped) return;
        setData(next);
        setError("");
      } catch (err) {
        if (stopped) return;
        setError(err instanceof ApiError ? err.message : "the node did not answer");
      }
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    void tick();
    return () => {
      stopped = true;
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [path, everyMs]);
  return { data, error };
}
