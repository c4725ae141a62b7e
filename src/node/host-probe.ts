import net from "node:net";

export interface HostProbeOptions {
  /** A host that has not answered two TCP handshakes in a row, each within this, is lost. Default 600 ms. */
  timeoutMs?: number;
  /** A host that answered this recently is not asked again. Default 250 ms. */
  freshMs?: number;
}

/** Whether the host behind a supervisor's address still answers. */
export interface HostLiveness {
  /** Never rejects. */
  alive(address: string): Promise<boolean>;
  /** Waits for the probes under way (the node's close). */
  settled?(): Promise<void>;
}

/**
 * Whether a host still answers, asked with one TCP handshake to its supervisor's API (the app
 * proxy asks when an app on another host is slow to answer). Any answer proves the host is
 * there, a refusal included (a supervisor killed with -9 leaves its runners serving); only
 * silence, or a network that has no way there, means lost. Probes of one address are shared, so
 * a burst of slow requests costs one handshake.
 */
export class HostProbe implements HostLiveness {
  private readonly timeoutMs: number;
  private readonly freshMs: number;
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private readonly answeredAt = new Map<string, number>();

  constructor(opts: HostProbeOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 600;
    this.freshMs = opts.freshMs ?? 250;
  }

  /** `address` is a supervisor's URL, e.g. `http://[fd5a:1f00:1:2::1]:8730`. Never rejects. */
  alive(address: string): Promise<boolean> {
    const at = this.answeredAt.get(address);
    if (at !== undefined && Date.now() - at <= this.freshMs) return Promise.resolve(true);
    let probe = this.inFlight.get(address);
    if (!probe) {
      // A lost handshake (a dropped packet, a stalled tunnel process on a busy host) must not
      // condemn a live host and every request to it: silence counts only twice in a row.
      probe = this.handshake(address)
        .then((answered) => answered || this.handshake(address))
        .then((answered) => {
          this.inFlight.delete(address);
          if (this.answeredAt.size >= 4096) this.answeredAt.clear();
          if (answered) this.answeredAt.set(address, Date.now());
          else this.answeredAt.delete(address);
          return answered;
        });
      this.inFlight.set(address, probe);
    }
    return probe;
  }

  /** Waits for the probes under way. */
  async settled(): Promise<void> {
    await Promise.all(this.inFlight.values());
  }

  private handshake(address: string): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(address);
    } catch {
      return Promise.resolve(true);
    }
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    return new Promise((resolve) => {
      const socket = net.connect({ host, port });
      let done = false;
      const finish = (answered: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(answered);
      };
      socket.once("connect", () => finish(true));
      socket.once("error", (err: NodeJS.ErrnoException) => finish(err.code === "ECONNREFUSED"));
      // Timers run before I/O in an event-loop turn: on a busy node a handshake that completed
      // during a long turn is seen only after the timer fires, so decide after I/O (setImmediate).
      const timer = setTimeout(() => setImmediate(() => finish(false)), this.timeoutMs);
    });
  }
}
