/** One deploy: its steps as a live timeline, the build log, each target's rollout. */
export function DeployPage({ id }: { id: string }) {
  return (
    <section>
      <h1>Deploy {id}</h1>
      <p class="muted">The deploy page is being built.</p>
    </section>
  );
}
