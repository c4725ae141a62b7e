import { useEffect } from "preact/hooks";
import { LocationProvider, Route, Router, useLocation } from "preact-iso";
import { Layout } from "./layout";
import { NotFoundPage } from "./pages/not-found";
import { routes } from "./routes";
import { SessionProvider, useSession } from "./session";

/** Pages other than the public ones wait for the session and send a stranger to /login. */
function Guarded({ page: Page, ...props }: { page: (typeof routes)[number]["component"] }) {
  const { session } = useSession();
  const { url, route } = useLocation();
  useEffect(() => {
    if (session === null) route(`/login?next=${encodeURIComponent(url)}`, true);
  }, [session, url, route]);
  if (!session) return <p class="muted">Loading…</p>;
  return <Page {...props} />;
}

function Home() {
  const { route } = useLocation();
  useEffect(() => route("/apps", true), [route]);
  return null;
}

export function App() {
  return (
    <LocationProvider>
      <SessionProvider>
        <Layout>
          <Router>
            <Route path="/" component={Home} />
            {routes.map((r) =>
              r.public ? (
                <Route key={r.path} path={r.path} component={r.component} />
              ) : (
                <Route key={r.path} path={r.path} component={Guarded} page={r.component} />
              ),
            )}
            <Route default component={NotFoundPage} />
          </Router>
        </Layout>
      </SessionProvider>
    </LocationProvider>
  );
}
