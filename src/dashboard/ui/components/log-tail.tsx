import { useEffect, useRef, useState } from "preact/hooks";
import { node, streamLines, TabbifyError } from "../api";

const KEEP = 500;

/**
 * A followed text stream (the app's logs): new lines appear as they arrive and the view sticks to
 * the bottom; Pause holds the view still (lines keep arriving and show on Resume). Read through
 * the client's `logs(app, {tail, follow})`, as `tcli logs -f` reads them.
 */
export function LogTail({ app, tail }: { app: string; tail: number }) {
  const [lines, setLines] = useState<string[]>([]);
  const [paused, setPaused] = useState(false);
  const [note, setNote] = useState("connecting…");
  const held = useRef<string[]>([]);
  const pausedRef = useRef(false);
  const box = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const controller = new AbortController();
    held.current = [];
    setLines([]);
    const push = (line: string) => {
      held.current.push(line);
      if (held.current.length > KEEP) held.current.splice(0, held.current.length - KEEP);
      if (!pausedRef.current) setLines([...held.current]);
    };
    // A target's stream ends when its workload is swapped or restarted: follow again from there
    // on (tail=0, so nothing already shown repeats).
    const follow = async () => {
      let first = tail;
      while (!controller.signal.aborted) {
        setNote("following");
        try {
          await streamLines(await node.logs(app, { tail: first, follow: true }), push, controller.signal);
          setNote("the stream ended; reconnecting");
        } catch (err) {
          if (controller.signal.aborted) return;
          setNote(err instanceof TabbifyError ? err.message : "the log stream broke; reconnecting");
        }
        first = 0;
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    void follow();
    return () => controller.abort();
  }, [app, tail]);

  useEffect(() => {
    const el = box.current;
    if (el && !paused) el.scrollTop = el.scrollHeight;
  }, [lines, paused]);

  const toggle = () => {
    pausedRef.current = !paused;
    if (paused) setLines([...held.current]);
    setPaused(!paused);
  };

  return (
    <div>
      <div class="row">
        <button type="button" class="secondary" onClick={toggle} aria-pressed={paused}>
          {paused ? "Resume" : "Pause"}
        </button>
        <span class="muted" role="status">
          {paused ? "paused" : note}
        </span>
      </div>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard. */}
      <pre class="log" ref={box} tabIndex={0} role="log" aria-label="Log lines" data-testid="log">
        {lines.join("\n")}
      </pre>
    </div>
  );
}
