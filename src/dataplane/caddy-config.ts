import { readFile } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { hostPort } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { EdgeConfigInput, EdgeEngine } from "./engine.js";

/** The proxy handler every app route and the node fallback share. */
function reverseProxy(dial: string, setHeaders: Record<string, string[]>) {
  return {
    handler: "reverse_proxy",
    upstreams: [{ dial }],
    // Stream: flush every write, never buffer a body either way.
    flush_interval: -1,
    // Append to the caller's X-Forwarded-For as the node's own proxy does.
    trusted_proxies: ["0.0.0.0/0", "::/0"],
    transport: {
      protocol: "http",
      // Otherwise Go asks the app for gzip and decompresses on the app's behalf.
      compression: false,
      keep_alive: { max_idle_conns_per_host: 64, idle_timeout: "4s" },
    },
    headers: { request: { set: setHeaders, delete: ["Proxy-Authorization", "Te"] } },
  };
}

/**
 * The whole Caddy JSON config for the edge: one route per roster app (Caddy's `path` matcher is
 * case-insensitive, so an upper-case uuid is the same app), the node as the fallback for
 * everything else, and the node again for Caddy's own errors (a roster app that does not
 * answer), with the original URI, so 400/404/502 bodies are the node's. Values are uuids and
 * addresses the node derived (edge.ts checks them) and JSON.stringify quotes them.
 */
export function renderCaddyConfig(c: EdgeConfigInput): string {
  const node = hostPort(c.nodeApi.host, c.nodeApi.port);
  const apps = c.routes.map((r) => {
    const authority = hostPort(r.host, c.appPort);
    return {
      match: [{ path: [`/app/${r.uuid}`, `/app/${r.uuid}/*`] }],
      handle: [
        {
          handler: "headers",
          request: {
            set: {
              "X-Forwarded-Prefix": [
                "{http.request.header.X-Forwarded-Prefix}/app/{http.request.uri.path.1}",
              ],
            },
          },
        },
        { handler: "rewrite", path_regexp: [{ find: "^/app/[^/]*", replace: "" }] },
        reverseProxy(authority, { Host: [authority] }),
      ],
      terminal: true,
    };
  });
  const loopback = ["127.0.0.0/8", "::1"];
  const config = {
    admin: { listen: `unix/${join(c.edgeDir, "admin.sock")}`, config: { persist: false } },
    logging: { logs: { default: { level: "ERROR", writer: { output: "stderr" } } } },
    storage: { module: "file_system", root: join(c.edgeDir, "caddy-data") },
    apps: {
      http: {
        servers: {
          edge: {
            listen: [hostPort(c.listenHost, c.listenPort)],
            automatic_https: { disable: true },
            routes: [
              {
                match: [{ path: ["/.tabbify-edge"], remote_ip: { ranges: loopback } }],
                handle: [{ handler: "static_response", status_code: 200, body: String(c.generation) }],
                terminal: true,
              },
              {
                match: [{ path: ["/.tabbify-edge"] }],
                handle: [{ handler: "static_response", status_code: 403 }],
                terminal: true,
              },
              ...apps,
              { handle: [reverseProxy(node, {})] },
            ],
            errors: {
              routes: [
                {
                  handle: [
                    { handler: "rewrite", uri: "{http.request.orig_uri}" },
                    { handler: "headers", request: { delete: ["X-Forwarded-Prefix"] } },
                    reverseProxy(node, {}),
                  ],
                },
              ],
            },
          },
        },
      },
    },
  };
  return `${JSON.stringify(config, null, 1)}\n`;
}

/** POSTs the live config to Caddy's admin socket: Caddy swaps servers gracefully, listeners kept. */
async function loadOverAdmin(dir: string, configPath: string): Promise<void> {
  const body = await readFile(configPath);
  await new Promise<void>((resolve, reject) => {
    const req = http.request(
      {
        socketPath: join(dir, "admin.sock"),
        path: "/load",
        method: "POST",
        // Caddy's admin endpoint on a unix socket accepts only an empty Host.
        setHost: false,
        headers: ["Host", "", "Content-Type", "application/json", "Content-Length", String(body.length)],
        timeout: 10_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          if (text.length < 2000) text += c;
        });
        res.on("end", () =>
          res.statusCode === 200
            ? resolve()
            : reject(new TabbifyError("EDGE_CONFIG_REFUSED", `caddy refused the config: ${text.trim()}`)),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error("caddy's admin socket did not answer")));
    req.on("error", reject);
    req.end(body);
  });
}

export const caddyEngine: EdgeEngine = {
  name: "caddy",
  binary: "caddy",
  aptPackage: "caddy",
  configFile: "caddy.json",
  pidFile: "caddy.pid",
  render: renderCaddyConfig,
  validateArgs: (candidate) => ["validate", "--config", candidate, "--adapter", ""],
  runArgs: (config, dir) => ["run", "--config", config, "--pidfile", join(dir, "caddy.pid")],
  // Caddy keeps state under HOME/XDG dirs: all of it stays in the edge dir.
  env: (dir, workers) => ({
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, "xdg-config"),
    XDG_DATA_HOME: join(dir, "xdg-data"),
    GOMAXPROCS: String(workers),
  }),
  reload: (_child, dir) => loadOverAdmin(dir, join(dir, "caddy.json")),
  stopSignal: "SIGTERM",
};
