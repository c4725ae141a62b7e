/** RFC 8628: approve the code `tcli login` shows, from a logged-in browser. */
export function DevicePage() {
  return (
    <section class="narrow">
      <h1>Approve a device</h1>
      <p class="muted">The device approval page is being built.</p>
    </section>
  );
}
