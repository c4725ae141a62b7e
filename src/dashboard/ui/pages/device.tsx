import { useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { node, TabbifyError } from "../api";
import { useSession } from "../session";

/**
 * RFC 8628's verification_uri: approve (or refuse) the code `tcli login` shows. A tenant session
 * approves for its own tenant; the node key names the tenant the device gets.
 */
export function DevicePage() {
  const { session } = useSession();
  const { query } = useLocation();
  const [code, setCode] = useState((query["user_code"] ?? "").toUpperCase().replace(/[^A-Z-]/g, ""));
  const [tenant, setTenant] = useState("");
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const nodeKey = session?.tenant === null;

  const decide = (verb: "approve" | "deny") => async (e: Event) => {
    e.preventDefault();
    setOutcome(null);
    try {
      const body = {
        user_code: code.trim(),
        ...(nodeKey && verb === "approve" ? { tenant: tenant.trim() } : {}),
      };
      // The same call `tcli login --device`'s approver makes.
      await node.request("POST", `/v1/auth/device/${verb}`, body);
      setOutcome({
        ok: true,
        text:
          verb === "approve" ? "Approved: the device is logged in." : "Refused: the device was turned away.",
      });
    } catch (err) {
      setOutcome({ ok: false, text: err instanceof TabbifyError ? err.message : String(err) });
    }
  };

  return (
    <section class="narrow">
      <h1>Approve a device</h1>
      <p class="muted">
        Only approve a code you started yourself with <code>tcli login</code>: the device gets a token for
        {session?.tenant ? ` tenant ${session.tenant}` : " the tenant you name"}.
      </p>
      <form class="stack" onSubmit={decide("approve")}>
        <label for="user-code">Code shown by tcli</label>
        <input
          id="user-code"
          autoComplete="off"
          required
          value={code}
          onInput={(e) => setCode((e.target as HTMLInputElement).value.toUpperCase())}
        />
        {nodeKey ? (
          <>
            <label for="tenant">Tenant</label>
            <input
              id="tenant"
              required
              value={tenant}
              onInput={(e) => setTenant((e.target as HTMLInputElement).value)}
            />
          </>
        ) : null}
        <div class="actions">
          <button type="submit">Approve</button>
          <button type="button" class="danger" onClick={decide("deny")}>
            Deny
          </button>
        </div>
        {outcome ? (
          <p role="status" class={outcome.ok ? "" : "error"}>
            {outcome.text}
          </p>
        ) : null}
      </form>
    </section>
  );
}
