// hello-node: the smallest Tabbify app. Plain node:http, no dependencies. It serves on
// HOST:PORT (the runtime sets both) and closes gracefully on SIGTERM so a swap drops nothing.
import { createServer } from "node:http";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 8080);
const version = process.env.VERSION ?? "1";

const server = createServer((req, res) => {
  const path = new URL(req.url ?? "/", "http://app").pathname;
  if (path === "/api/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", version }));
    return;
  }
  if (path === "/") {
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    res.end(`hello from hello-node v${version}\n`);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
  res.end("not found\n");
});

server.listen(port, host, () => {
  console.log(`hello-node v${version} listening on ${host}:${port}`);
});

process.once("SIGTERM", () => {
  console.log("hello-node: SIGTERM received, closing");
  // Finish the requests in flight, then exit; idle keep-alive connections would hold close() open.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
