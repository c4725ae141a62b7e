import type { WorkloadSpec } from "../runtimes/runtime.js";
import type { AppProxy } from "./proxy.js";

/**
 * The idle clock of an `on_request` app: checks, a few times per timeout, whether no request
 * has been under way for `idle_timeout_sec`, and then asks the runner to stop the workload. The
 * runner keeps its address bound while the app sleeps; the next request wakes it (AppProxy.sleep).
 * An `always_on` app (or one without a lifecycle) never sleeps.
 */
export class IdleTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly proxy: AppProxy,
    private readonly lifecycle: () => WorkloadSpec["lifecycle"],
    private readonly onIdle: () => Promise<void>,
  ) {}

  start(): void {
    if (this.timer) return;
    // Checks at least once a second, so a sleep comes at most a second after the timeout.
    this.timer = setInterval(() => {
      if (this.expired()) this.onIdle().catch(() => {});
    }, 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** True when the app is on_request, has a workload with nothing under way, and was idle long enough. */
  expired(): boolean {
    const lifecycle = this.lifecycle();
    if (lifecycle?.mode !== "on_request" || !this.proxy.current || !this.proxy.quiet) return false;
    return Date.now() - this.proxy.lastActivity >= lifecycle.idleTimeoutSec * 1000;
  }
}
