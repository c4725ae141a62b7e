import { type ComponentChildren, createContext } from "preact";
import { useCallback, useContext, useEffect, useState } from "preact/hooks";
import { SESSION_API } from "../paths";
import { ApiError, api, setCsrfToken } from "./api";

/** Who the dashboard is logged in as: the node key (every tenant) or one tenant's token. */
export interface Session {
  actor: string;
  /** Absent for the node key. */
  tenant: string | null;
  csrf_token: string;
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
  const adopt = useCallback((next: Session | null) => {
    setCsrfToken(next?.csrf_token ?? "");
    setSession(next);
  }, []);

  useEffect(() => {
    api<Session>(`${SESSION_API}/session`)
      .then(adopt)
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) adopt(null);
        else adopt(null);
      });
    // Any API call answering 401 means the session ended (expired, logged out elsewhere).
    const ended = () => adopt(null);
    window.addEventListener("tabbify:unauthorized", ended);
    return () => window.removeEventListener("tabbify:unauthorized", ended);
  }, [adopt]);

  const login = useCallback(
    async (token: string) =>
      adopt(await api<Session>(`${SESSION_API}/login`, { method: "POST", body: { token } })),
    [adopt],
  );
  const logout = useCallback(async () => {
    try {
      await api(`${SESSION_API}/logout`, { method: "POST" });
    } finally {
      adopt(null);
    }
  }, [adopt]);

  return <SessionContext.Provider value={{ session, login, logout }}>{children}</SessionContext.Provider>;
}
