import { useRef, useState } from "preact/hooks";
import { TabbifyError } from "../api";

/**
 * A button that asks first: a native <dialog> names the action, and only its Confirm runs it. The
 * outcome (or the node's error) shows beside the button.
 */
export function ConfirmButton(props: {
  label: string;
  question: string;
  run: () => Promise<string>;
  tone?: "danger" | "secondary";
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const confirm = async () => {
    dialog.current?.close();
    setBusy(true);
    setOutcome(null);
    try {
      setOutcome({ ok: true, text: await props.run() });
    } catch (err) {
      setOutcome({ ok: false, text: err instanceof TabbifyError ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="confirm">
      <button
        type="button"
        class={props.tone ?? "secondary"}
        disabled={busy}
        onClick={() => dialog.current?.showModal()}
      >
        {busy ? `${props.label}…` : props.label}
      </button>
      <dialog ref={dialog} aria-label={props.label}>
        <p>{props.question}</p>
        <div class="actions">
          <button type="button" onClick={() => void confirm()}>
            Confirm
          </button>
          <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
        </div>
      </dialog>
      {outcome ? (
        <span role="status" class={outcome.ok ? "muted" : "error"}>
          {outcome.text}
        </span>
      ) : null}
    </span>
  );
}
