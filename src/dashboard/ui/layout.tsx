import type { ComponentChildren } from "preact";
import { useLocation } from "preact-iso";
import { routes } from "./routes";
import { useSession } from "./session";

/** The frame every page sits in: the header with navigation and who is logged in. */
export function Layout({ children }: { children: ComponentChildren }) {
  const { session, logout } = useSession();
  const { path } = useLocation();
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/apps">
          Tabbify
        </a>
        {session ? (
          <nav aria-label="Main">
            {routes
              .filter((r) => r.nav && !(r.nodeKeyOnly && session.tenant))
              .map((r) => (
                <a
                  key={r.path}
                  href={r.path}
                  aria-current={path === r.path || path.startsWith(`${r.path}/`) ? "page" : undefined}
                >
                  {r.nav}
                </a>
              ))}
          </nav>
        ) : null}
        {session ? (
          <div class="who">
            <span class="muted" title={session.actor}>
              {session.tenant ? `tenant ${session.tenant}` : "node key"}
            </span>
            <button type="button" class="link" onClick={() => void logout()}>
              Log out
            </button>
          </div>
        ) : null}
      </header>
      <main id="main">{children}</main>
    </>
  );
}
