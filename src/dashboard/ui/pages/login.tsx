import { useEffect, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { TabbifyError } from "../api";
import { useSession } from "../session";

/** Paste a node key or tenant token; the node keeps it and hands back an HttpOnly session cookie. */
export function LoginPage() {
  const { session, login } = useSession();
  const { query, route } = useLocation();
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  // Only a path on this origin: an open redirect through ?next= would be a phishing aid.
  const next = query["next"]?.startsWith("/") && !query["next"].startsWith("//") ? query["next"] : "/apps";

  useEffect(() => {
    if (session) route(next, true);
  }, [session, next, route]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await login(token.trim());
      setToken("");
    } catch (err) {
      setError(err instanceof TabbifyError ? err.message : "the node did not answer");
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="narrow">
      <h1>Log in</h1>
      <p class="muted">
        Paste the node key (<code>TABBIFY_NODE_KEY</code>) or a tenant token (<code>tcli login</code> prints
        one). It stays on the node; this browser keeps only a session cookie.
      </p>
      <form onSubmit={submit} class="stack">
        <label for="token">Node key or tenant token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          required
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy || token.trim() === ""}>
          {busy ? "Logging in…" : "Log in"}
        </button>
        {error ? (
          <p role="alert" class="error">
            {error}
          </p>
        ) : null}
      </form>
    </section>
  );
}
