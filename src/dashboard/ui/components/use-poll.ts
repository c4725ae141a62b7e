import { useEffect, useRef, useState } from "preact/hooks";
import { TabbifyError } from "../api";

/**
 * Calls `load` (a typed client call) now and every `everyMs` while the page shows, starting over
 * when `key` changes (null: not now); the latest answer or error.
 */
export function usePoll<T>(
  key: string | null,
  load: () => Promise<T>,
  everyMs: number,
): { data: T | undefined; error: string } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState("");
  const loader = useRef(load);
  loader.current = load;
  useEffect(() => {
    if (key === null) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const next = await loader.current();
        if (stopped) return;
        setData(next);
        setError("");
      } catch (err) {
        if (stopped) return;
        setError(err instanceof TabbifyError ? err.message : "the node did not answer");
      }
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    void tick();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [key, everyMs]);
  return { data, error };
}
