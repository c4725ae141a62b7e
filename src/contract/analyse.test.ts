import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import canonicalize from "canonicalize";
import { isTabbifyError } from "../core/errors.js";
import { type AnalysisResult, analyseHandler } from "./analyse.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function analyse(files: Record<string, string>, handler = "handler.ts"): Promise<AnalysisResult> {
  const dir = await mkdtemp(join(tmpdir(), "tbf-contract-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return analyseHandler(join(dir, handler));
}

const hello = `export default function handler(req: Request): Response {\n  return new Response("hi");\n}\n`;

describe("analyser: env", () => {
  test("literal reads in every form, sorted and deduplicated", async () => {
    const r = await analyse({
      "handler.ts": `
        const { C, D: renamed } = process.env;
        export default (req: Request) => {
          const a = process.env.A;
          const b = process.env["B"];
          return new Response(String(a ?? b ?? C ?? renamed ?? process.env.A));
        };`,
    });
    assert.deepEqual(r.contract.env, { literal: ["A", "B", "C", "D"], dynamic: false });
    assert.equal(r.contract.proofLevel, "complete");
  });
  test("a computed name makes env dynamic and the proof partial", async () => {
    const r = await analyse({
      "handler.ts": `export default (req: Request) => { const k = "X" + 1; return new Response(process.env[k]); };`,
    });
    assert.equal(r.contract.env.dynamic, true);
    assert.equal(r.contract.proofLevel, "partial");
  });
  test("process.env passed whole, or a rest pattern, is dynamic", async () => {
    for (const src of [
      `const all = process.env; export default () => new Response(Object.keys(all).join());`,
      `const { A, ...rest } = process.env; export default () => new Response(String(A));`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.env.dynamic, true, src);
    }
  });
});

describe("analyser: egress", () => {
  test("literal URLs reaching fetch, directly, through new URL, templates and consts; http too", async () => {
    const r = await analyse({
      "handler.ts": `
        const BASE = "https://api.example.com/v1/";
        const plain = new URL("http://plain.example:8080/a");
        export default async (req: Request) => {
          const own = new URL(req.url);
          const id = own.searchParams.get("id");
          await fetch(BASE + "items");
          await fetch(plain);
          await fetch(\`https://t.example/items/\${id}\`);
          await fetch(new URL("/x", "https://based.example"));
          return new Response("ok");
        };`,
    });
    assert.deepEqual(r.contract.egress, {
      hosts: ["api.example.com", "based.example", "plain.example:8080", "t.example"],
      dynamic: false,
    });
    assert.equal(r.contract.properties.hasEgress, true);
    assert.equal(r.contract.properties.pure, false);
    assert.equal(r.contract.proofLevel, "complete");
  });
  test("parsing the request's own URL is not egress", async () => {
    const r = await analyse({
      "handler.ts": `export default (req: Request) => new Response(new URL(req.url).searchParams.get("q"));`,
    });
    assert.deepEqual(r.contract.egress, { hosts: [], dynamic: false });
    assert.equal(r.contract.properties.hasEgress, false);
  });
  test("a computed URL reaching fetch is dynamic", async () => {
    for (const src of [
      `export default (req: Request) => fetch(req.url);`,
      `export default (req: Request) => fetch(\`\${new URL(req.url).searchParams.get("u")}\`);`,
      `export default (req: Request) => { const u = req.headers.get("x") ?? ""; return fetch("https://" + u); };`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.egress.dynamic, true, src);
      assert.equal(r.contract.proofLevel, "partial", src);
    }
  });
  test("a fetch that writes (POST) makes the handler not read-only", async () => {
    const r = await analyse({
      "handler.ts": `export default () => fetch("https://hook.example/x", { method: "POST", body: "{}" });`,
    });
    assert.equal(r.contract.properties.readOnly, false);
    assert.equal(r.contract.properties.retrySafe, false);
  });
});

describe("analyser: routes", () => {
  test("===, startsWith, switch and a route table", async () => {
    const r = await analyse({
      "handler.ts": `
        const routes = { "/table-a": () => new Response("a"), "/table-b": () => new Response("b") };
        export default (req: Request) => {
          const url = new URL(req.url);
          const { pathname } = url;
          if (url.pathname === "/health") return new Response("ok");
          if (pathname.startsWith("/api/")) return new Response("api");
          switch (pathname) { case "/s1": return new Response("1"); case "/s2": return new Response("2"); }
          const hit = routes[pathname as keyof typeof routes];
          return hit ? hit() : new Response("nf", { status: 404 });
        };`,
    });
    assert.deepEqual(r.contract.routes, [
      { pattern: "/api/", isPrefix: true },
      { pattern: "/health", isPrefix: false },
      { pattern: "/s1", isPrefix: false },
      { pattern: "/s2", isPrefix: false },
      { pattern: "/table-a", isPrefix: false },
      { pattern: "/table-b", isPrefix: false },
    ]);
    assert.equal(r.contract.routesDynamic, false);
    assert.equal(r.failurePathCount, 1);
    assert.equal(r.behaviorPathCount, 7);
  });
  test("a handler that never looks at the path answers every path", async () => {
    const r = await analyse({ "handler.ts": hello });
    assert.deepEqual(r.contract.routes, [{ pattern: "/", isPrefix: true }]);
  });
  test("a regex match on the path is dynamic", async () => {
    const r = await analyse({
      "handler.ts": `export default (req: Request) => { const p = new URL(req.url).pathname; return new Response(String(/^\\/u\\/\\d+$/.test(p))); };`,
    });
    assert.equal(r.contract.routesDynamic, true);
    assert.equal(r.contract.proofLevel, "partial");
  });
});

describe("analyser: cache", () => {
  test("namespaces from the tabbify:cache API; a computed one is dynamic", async () => {
    const lit = await analyse({
      "handler.ts": `import { cache } from "tabbify:cache";\nconst s = cache("sessions");\nexport default async () => new Response(String(await cache("views").get("k")));`,
    });
    assert.deepEqual(lit.contract.cache, { namespaces: ["sessions", "views"], dynamic: false });
    assert.ok(lit.contract.sandbox.capabilities.includes("cache"));
    const dyn = await analyse({
      "handler.ts": `import { cache as c } from "tabbify:cache";\nexport default (req: Request) => new Response(String(c(req.url)));`,
    });
    assert.equal(dyn.contract.cache.dynamic, true);
  });
});

describe("analyser: properties", () => {
  test("a plain GET handler proves every basic property", async () => {
    const r = await analyse({ "handler.ts": hello });
    const p = r.contract.properties;
    assert.deepEqual(
      [p.readOnly, p.stateless, p.deterministic, p.retrySafe, p.noSecretLeakage, p.hasEgress, p.pure],
      [true, true, true, true, true, false, true],
    );
    assert.equal(r.contract.proofLevel, "complete");
  });
  test("readOnly: a POST branch or a body read disproves it", async () => {
    for (const src of [
      `export default (req: Request) => req.method === "POST" ? new Response("w") : new Response("r");`,
      `export default async (req: Request) => new Response(JSON.stringify(await req.json()));`,
      `export default (req: Request) => { switch (req.method) { case "DELETE": return new Response("d"); } return new Response("x"); };`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.properties.readOnly, false, src);
    }
    const get = await analyse({
      "handler.ts": `export default (req: Request) => req.method === "HEAD" ? new Response(null) : new Response("x");`,
    });
    assert.equal(get.contract.properties.readOnly, true);
  });
  test("retrySafe through idempotence: PUT only, stateless", async () => {
    const r = await analyse({
      "handler.ts": `export default (req: Request) => req.method === "PUT" ? new Response("put") : new Response("get");`,
    });
    assert.equal(r.contract.properties.readOnly, false);
    assert.equal(r.contract.properties.idempotent, true);
    assert.equal(r.contract.properties.retrySafe, true);
  });
  test("stateless: module state written in the handler disproves it", async () => {
    for (const src of [
      `let count = 0; export default () => new Response(String(++count));`,
      `const seen = new Map(); export default (req: Request) => { seen.set(req.url, 1); return new Response("x"); };`,
      `const log: string[] = []; export default (req: Request) => { log.push(req.url); return new Response("x"); };`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.properties.stateless, false, src);
      assert.equal(r.contract.properties.retrySafe, true, "a GET handler is still read-only");
    }
    const readsOnly = await analyse({
      "handler.ts": `const table = new Map([["a", "1"]]); export default () => new Response(table.get("a"));`,
    });
    assert.equal(readsOnly.contract.properties.stateless, true);
  });
  test("deterministic: Date, Math.random or crypto.random* on the request path disprove it", async () => {
    for (const src of [
      `export default () => new Response(String(Date.now()));`,
      `export default () => new Response(new Date().toISOString());`,
      `export default () => new Response(String(Math.random()));`,
      `export default () => new Response(crypto.randomUUID());`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.properties.deterministic, false, src);
    }
    const atStartup = await analyse({
      "handler.ts": `const bootedAt = Date.now(); export default () => new Response(String(bootedAt));`,
    });
    assert.equal(atStartup.contract.properties.deterministic, true);
  });
  test("noSecretLeakage: a secret-looking env value flowing into a response body", async () => {
    for (const src of [
      `export default () => new Response(process.env.API_TOKEN);`,
      `export default () => { const t = process.env.DB_PASSWORD; const msg = "pw=" + t; return new Response(msg); };`,
      `export default () => Response.json({ key: process.env.STRIPE_SECRET_KEY });`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.properties.noSecretLeakage, false, src);
    }
    for (const src of [
      `export default () => new Response(process.env.GREETING);`,
      `export default async () => { const t = process.env.API_TOKEN; const r = await fetch("https://a.example/", { headers: { authorization: "Bearer " + t } }); return new Response(r.status === 200 ? "ok" : "no"); };`,
    ]) {
      const r = await analyse({ "handler.ts": src });
      assert.equal(r.contract.properties.noSecretLeakage, true, src);
    }
  });
});

describe("analyser: modules and proof level", () => {
  test("local imports are followed; their facts join the contract", async () => {
    const r = await analyse({
      "handler.ts": `import { load } from "./lib.js";\nexport default async () => new Response(await load());`,
      "lib.ts": `export async function load() { const r = await fetch("https://lib.example/data"); return (await r.text()) + process.env.LIB_MODE; }`,
    });
    assert.deepEqual(r.modules, ["handler.ts", "lib.ts"]);
    assert.deepEqual(r.contract.egress.hosts, ["lib.example"]);
    assert.deepEqual(r.contract.env.literal, ["LIB_MODE"]);
    assert.equal(r.contract.proofLevel, "complete");
  });
  test("a missing local module, a syntax error or a package import make the proof partial", async () => {
    for (const files of [
      { "handler.ts": `import { x } from "./missing.js";\nexport default () => new Response(x);` },
      { "handler.ts": `export default () => new Response("x"\n` },
      { "handler.ts": `import left from "left-pad";\nexport default () => new Response(left("x", 2));` },
    ]) {
      const r = await analyse(files);
      assert.equal(r.contract.proofLevel, "partial", JSON.stringify(files));
      assert.ok(r.notes.length > 0);
    }
  });
  test("a handler module without a handler export is refused", async () => {
    await assert.rejects(
      analyse({ "handler.ts": `function handler() { return new Response("x"); }` }),
      (err) => isTabbifyError(err, "HANDLER_EXPORT_MISSING"),
    );
    const named = await analyse(
      { "handler.js": `export function handler() { return new Response("x"); }` },
      "handler.js",
    );
    assert.equal(named.contract.proofLevel, "complete");
  });
});

describe("analyser: contractSha", () => {
  test("sha256 of the RFC 8785 canonical contract; equal code gives equal sha", async () => {
    const a = await analyse({
      "handler.ts": `export default () => fetch("https://b.example/") && fetch("https://a.example/");`,
    });
    const b = await analyse({
      "handler.ts": `export default () => fetch("https://a.example/") && fetch("https://b.example/");`,
    });
    assert.equal(a.contractSha, b.contractSha);
    const expected = createHash("sha256")
      .update(canonicalize(a.contract) as string)
      .digest("hex");
    assert.equal(a.contractSha, expected);
    const c = await analyse({ "handler.ts": `export default () => fetch("https://c.example/");` });
    assert.notEqual(a.contractSha, c.contractSha);
  });
});

describe("analyser: size", () => {
  test("a 2,000-line handler is analysed in well under the deploy's budget", async (t) => {
    const lines: string[] = [`import { cache } from "tabbify:cache";`];
    let i = 0;
    while (lines.length < 1990) {
      lines.push(
        `function route${i}(req: Request): Response {`,
        `  const v = process.env.VAR_${i % 40} ?? "";`,
        `  if (v === "x") return new Response("x${i}", { status: 400 });`,
        `  return new Response(v + "${i}");`,
        `}`,
      );
      i++;
    }
    lines.push(`export default async (req: Request) => {`);
    lines.push(`  const { pathname } = new URL(req.url);`);
    lines.push(`  if (pathname === "/r0") return route0(req);`);
    lines.push(`  await fetch("https://upstream.example/ping");`);
    lines.push(`  return new Response(String(await cache("c").get("k")));`);
    lines.push(`};`);
    const started = performance.now();
    const r = await analyse({ "handler.ts": `${lines.join("\n")}\n` });
    const ms = performance.now() - started;
    t.diagnostic(`analysed ${lines.length} lines in ${ms.toFixed(1)} ms`);
    assert.equal(r.contract.env.literal.length, 40);
    assert.ok(ms < 5_000, `took ${ms} ms`);
  });
});
