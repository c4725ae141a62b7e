/** One app: environments, releases, actions, env names, log tail and deploys. */
export function AppPage({ app }: { app: string }) {
  return (
    <section>
      <h1>{app}</h1>
      <p class="muted">The app page is being built.</p>
    </section>
  );
}
