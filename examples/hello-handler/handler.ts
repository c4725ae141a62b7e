// A fetch-style handler: `tcli deploy` derives its contract (env GREETING, routes / and /health,
// no egress, read-only) and serves it on the platform. See the README's "Deploy a handler".
export default function handler(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname === "/health") return new Response("ok\n");
  if (url.pathname === "/") return new Response(`${process.env.GREETING ?? "hello"} from hello-handler\n`);
  return new Response("not found\n", { status: 404 });
}
