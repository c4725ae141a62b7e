/**
 * For tests of the node's `/app/<uuid>` door against apps bound on this host: an app listening
 * where the node dials its uuid, a runner put on the node's roster by hand (as its heartbeat
 * would), and a plain GET with a fresh connection.
 */
import http from "node:http";
import { APP_PORT, deriveAppLoopback } from "../../src/core/address.js";
import type { RosterCoordinator } from "../../src/mesh/coordinator.js";
import type { RegisterReply } from "../../src/mesh/roster.js";

/** Listens `app` where the node dials `uuid` (its loopback twin, :8730); rejects when it cannot. */
export function listenAsApp(app: http.Server, uuid: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    app.once("error", reject);
    app.listen(APP_PORT, deriveAppLoopback(uuid), () => {
      app.off("error", reject);
      resolve();
    });
  });
}

/** Puts a runner for `uuid` on the roster, bound at `host` (default: the uuid's loopback twin). */
export function registerLocalRunner(
  coordinator: RosterCoordinator,
  uuid: string,
  host = deriveAppLoopback(uuid),
): RegisterReply {
  return coordinator.register({
    kind: "runner",
    name: uuid,
    app_uuid: uuid,
    parent: "sup",
    address: `${host}:${APP_PORT}`,
    ula: host,
    version: "1",
    tags: ["runner"],
  });
}

/** GET on a connection of its own: the status and the whole body as text. */
export function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}
