export function NotFoundPage() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        No page here. <a href="/apps">Back to the apps</a>.
      </p>
    </section>
  );
}
