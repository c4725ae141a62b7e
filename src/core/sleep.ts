/**
 * The one way to wait a while. `unref`: the timer does not keep the process alive (for waits
 * that only bound something else, such as a shutdown's grace).
 */
export function sleep(ms: number, opts: { unref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (opts.unref) timer.unref();
  });
}
