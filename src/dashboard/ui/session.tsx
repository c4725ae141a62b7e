import { type ComponentChildren, createContext } from "preact";
import { useCallback, useContext, useEffect, useState } from "preact/hooks";
import { SESSION_API } from "../paths";
import { csrfTokenNow, node, setCsrfToken, TabbifyError } from "./api";

/** Who the dashboard is logged in as: the node key (every tenant) or one tenant's token. */
export interface Session {
  actor: string;
  /** Absent for the node key. */
  tenant: string | null;
}

/**
 * A live cookie but no token on this page (it was reached from another site, whose navigation
 * carries no SameSite=Strict cookie): load the page again from here, once, to get the token.
 */
function reloadForToken(): boolean {
  const key = "tabbify:reloaded-for-token";
  const last = Number(sessionStorage.getItem(key) ?? "0");
  if (Date.now() - last < 10_000) return false;
  sessionStorage.setItem(key, String(Date.now()));
  location.replace(location.href);
  return true;
}

interface SessionState {
  /** undefined while the first check runs; null when logged out. */
  session: Session | null | undefined;
  login(token: string): Promise<void>;
  logout(): Promise<void>;
}

const SessionContext = createContext<SessionState>({
  session: undefined,
  login: async () => {},
  logout: async () => {},
});

export function useSession(): SessionState {
  return useContext(SessionContext);
}

export function SessionProvider({ children }: { children: ComponentChildren }) {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const adopt = useCallback((next: (Session & { csrf_token?: string }) | null) => {
    if (next === null) setCsrfToken("");
    else if (next.csrf_token) setCsrfToken(next.csrf_token);
    setSession(next === null ? null : { actor: next.actor, tenant: next.tenant });
  }, []);

  useEffect(() => {
    node
      .request<Session>("GET", `${SESSION_API}/session`)
      .then(adopt)
      .catch((err: unknown) => {
        if (
          err instanceof TabbifyError &&
          err.code === "SESSION_NEEDS_PAGE" &&
          !csrfTokenNow() &&
          reloadForToken()
        )
          return;
        adopt(null);
      });
    // Any API call answering 401 means the session ended (expired, logged out elsewhere).
    const ended = () => adopt(null);
    window.addEventListener("tabbify:unauthorized", ended);
    return () => window.removeEventListener("tabbify:unauthorized", ended);
  }, [adopt]);

  const login = useCallback(
    async (token: string) =>
      adopt(await node.request<Session & { csrf_token: string }>("POST", `${SESSION_API}/login`, { token })),
    [adopt],
  );
  const logout = useCallback(async () => {
    try {
      await node.request("POST", `${SESSION_API}/logout`);
    } finally {
      adopt(null);
    }
  }, [adopt]);

  return <SessionContext.Provider value={{ session, login, logout }}>{children}</SessionContext.Provider>;
}
