/**
 * A workload's graceful drain on the kernel hop (runner/kernel-hop.ts). Through nftables a client's
 * TCP connection ends in the workload itself, so after a swap a keep-alive client stays on the old
 * workload until that connection closes. Closing it while the client sends its next request
 * loses that request (Node's `server.close()` does so: one `socket hang up` per pooled client).
 * The loss-free way is HTTP's own: the next response on each connection says `Connection: close`,
 * and a connection is closed by the server only once it has been quiet for a while.
 *
 * Node apps get this without changing a line: the process runtime starts `node` with
 * `--import <this hook>` (a data: URL, nothing on disk). The hook is passive until the runner
 * sends DRAIN_SIGNAL, whose default action is to be ignored, so a program without the hook (or
 * anything it forks) is unaffected. On the signal, every HTTP server the process listens with:
 *  - answers each further request with `Connection: close` (Node then closes after the response);
 *  - ends (FIN, never RST) each connection with no response under way that has read nothing for
 *    DRAIN_IDLE_MS.
 * The runner meanwhile counts the old workload's established connections and stops it once none
 * is left (or its drain timeout passes).
 */

export const DRAIN_SIGNAL: NodeJS.Signals = "SIGWINCH";
/** How long a connection must have read nothing before the draining server ends it. */
export const DRAIN_IDLE_MS = 400;

const hookSource = `
import net from "node:net";
import http from "node:http";
import dc from "node:diagnostics_channel";
const sockets = new Set();
const track = (socket) => {
  sockets.add(socket);
  socket.once("close", () => sockets.delete(socket));
};
const tracked = new WeakSet();
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (this instanceof http.Server && !tracked.has(this)) {
    tracked.add(this);
    this.on("connection", track);
  }
  return listen.apply(this, args);
};
let draining = false;
process.on("${DRAIN_SIGNAL}", () => {
  if (draining) return;
  draining = true;
  dc.subscribe("http.server.request.start", ({ response }) => {
    response.shouldKeepAlive = false;
  });
  const quiet = new Map();
  setInterval(() => {
    const now = Date.now();
    for (const socket of sockets) {
      const was = quiet.get(socket);
      if (socket._httpMessage || !was || was.bytes !== socket.bytesRead) {
        quiet.set(socket, { bytes: socket.bytesRead, since: now });
      } else if (now - was.since >= ${DRAIN_IDLE_MS}) {
        sockets.delete(socket);
        quiet.delete(socket);
        socket.end();
      }
    }
  }, 50).unref();
});
`;

/** `--import` of the hook as a data: URL, like the boot gate's (process-boot-ahead.ts). */
export const DRAIN_IMPORT = `data:text/javascript,${encodeURIComponent(hookSource)}`;
