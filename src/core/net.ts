import net from "node:net";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; the probe is closed
 * before returning, so a racing process could take it: callers that bind it must handle
 * EADDRINUSE like any other listen failure).
 */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once("error", reject);
    probe.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const port = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(port));
    });
  });
}
