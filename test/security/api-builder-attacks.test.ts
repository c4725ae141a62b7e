/**
 * Attacks on the builder's `POST /v1/build`, whose body its route schema now checks: bodies that
 * are no object, missing and mistyped fields, refs that git would read as options, tenants and
 * registries that would move the push elsewhere, paths leaving the repository, malformed JSON,
 * prototype-pollution keys and oversized bodies. Each refusal is answered in the builder's own
 * failure body `{error, code, stage: "validate", user_fault: true, log_tail: []}` (never fastify's),
 * in the plain and the streaming mode alike, quotes no token, and runs nothing: no build is known
 * afterwards and the builder's work dir stays empty.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { Builder } from "../../src/builder/builder.js";
import { registerBuildRoutes } from "../../src/builder/routes.js";
import { schemaAjv } from "../../src/core/api-docs.js";
import { isTabbifyError } from "../../src/core/errors.js";
import { tempDir } from "../support/tools.js";

interface Answer {
  status: number;
  json: Record<string, unknown>;
}

const TOKEN = "ghs_builderAttackTokenThatMustNeverBeQuoted";

describe("POST /v1/build under attack", () => {
  let root: { path: string; remove(): Promise<void> };
  let app: FastifyInstance;
  let builder: Builder;
  let base: string;
  const workDir = () => join(root.path, "builds");

  before(async () => {
    root = await tempDir("tabbify-builder-attacks");
    builder = new Builder({ workDir: workDir() });
    app = Fastify({ logger: false, ajv: schemaAjv });
    registerBuildRoutes(app, builder);
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app?.close();
    await root?.remove();
  });

  const good = () => ({
    repo_url: "https://git.example.com/acme/app.git",
    ref: "main",
    tenant: "acme",
    app_uuid: randomUUID(),
    registry: "registry.example:5000",
    clone_token: TOKEN,
  });

  const post = async (raw: string, stream = false): Promise<Answer> => {
    const res = await fetch(`${base}/v1/build`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: stream ? "application/x-ndjson" : "application/json",
      },
      body: raw,
    });
    const text = await res.text();
    return { status: res.status, json: JSON.parse(text) as Record<string, unknown> };
  };

  /** A refusal before anything ran, in the builder's failure body. */
  const refused = (r: Answer, status: number, code: string, what: string) => {
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.code, code, `${what}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.stage, "validate", what);
    assert.equal(r.json.user_fault, true, what);
    assert.deepEqual(r.json.log_tail, [], what);
    assert.equal(typeof r.json.error, "string", what);
    assert.equal(r.json.statusCode, undefined, `${what}: fastify's own error body`);
    assert.ok(!JSON.stringify(r.json).includes(TOKEN), `${what}: the token is quoted`);
  };

  const nothingRan = async (appUuid?: string) => {
    if (appUuid)
      assert.equal(builder.progress(appUuid), undefined, "a build of the refused request is known");
    const entries = await readdir(workDir()).catch(() => [] as string[]);
    assert.deepEqual(entries, [], "the refused request reached the work dir");
  };

  it("a body that is no object is refused with the builder's sentence", async () => {
    for (const raw of ["[1]", '"x"', "42", "true"]) {
      for (const stream of [false, true]) {
        const r = await post(raw, stream);
        refused(r, 400, "BUILD_REQUEST_INVALID", raw);
        assert.equal(r.json.error, "the build request must be a JSON object", raw);
      }
    }
    await nothingRan();
  });

  it("each missing, mistyped or malformed field is named, as the hand validator named it", async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ["no repo_url", { repo_url: undefined }, "repo_url is required"],
      ["no ref", { ref: undefined }, "ref is required"],
      ["no tenant", { tenant: undefined }, "tenant is required"],
      ["no app_uuid", { app_uuid: undefined }, "app_uuid is required"],
      ["no registry", { registry: undefined }, "registry is required"],
      ["numeric repo_url", { repo_url: 7 }, "repo_url must be a non-empty string"],
      ["empty ref", { ref: "" }, "ref must be a non-empty string"],
      ["ref array", { ref: ["main"] }, "ref must be a non-empty string"],
      [
        "ref as an option",
        { ref: "--upload-pack=touch /tmp/pwned" },
        "ref must be a commit sha, branch or tag name",
      ],
      ["ref -u", { ref: "-u" }, "ref must be a commit sha, branch or tag name"],
      ["ref traversal", { ref: "refs/../../x" }, "ref must be a commit sha, branch or tag name"],
      ["ref newline", { ref: "main\n--x" }, "ref must be a commit sha, branch or tag name"],
      ["tenant traversal", { tenant: "../other" }, "tenant is not a valid registry path component"],
      ["tenant slash", { tenant: "acme/other" }, "tenant is not a valid registry path component"],
      ["tenant kelvin", { tenant: "\u212Acme" }, "tenant is not a valid registry path component"],
      ["tenant huge", { tenant: "a".repeat(300) }, "tenant is not a valid registry path component"],
      ["app_uuid path", { app_uuid: "../../x" }, "app_uuid must be a UUID"],
      [
        "registry scheme",
        { registry: "http://evil.example" },
        "registry must be host[:port] without scheme or path",
      ],
      [
        "registry path",
        { registry: "evil.example/acme" },
        "registry must be host[:port] without scheme or path",
      ],
      [
        "registry_ula scheme",
        { registry: undefined, registry_ula: "https://evil" },
        "registry must be host[:port] without scheme or path",
      ],
      ["build_kind shell", { build_kind: "shell" }, "build_kind must be docker (the only kind supported)"],
      [
        "stable_tag a sha",
        { stable_tag: "0123456789abcdef0123456789abcdef01234567" },
        "stable_tag must be a docker tag that is not a commit sha",
      ],
      ["stable_tag option", { stable_tag: "-x" }, "stable_tag must be a docker tag that is not a commit sha"],
      [
        "clone_username colon",
        { clone_username: "x-access-token:evil" },
        "clone_username must be 1-200 characters without spaces or colons",
      ],
      ["push_token object", { push_token: { value: TOKEN } }, "push_token must be a non-empty string"],
      ["dockerfile root", { dockerfile: "." }, "dockerfile must name a file"],
    ];
    for (const [what, change, message] of cases) {
      const body = { ...good(), ...change };
      const r = await post(JSON.stringify(body));
      refused(r, 400, "BUILD_REQUEST_INVALID", what);
      assert.equal(String(r.json.error).startsWith(message), true, `${what}: ${r.json.error}`);
      await nothingRan(String(body.app_uuid));
    }
  });

  it("an image_repository of another tenant or registry is refused: the push goes where the request says", async () => {
    const body = good();
    for (const elsewhere of [
      `registry.example:5000/other/${body.app_uuid}`,
      `evil.example/acme/${body.app_uuid}`,
      `registry.example:5000/acme/${randomUUID()}`,
    ]) {
      const r = await post(JSON.stringify({ ...body, image_repository: elsewhere }));
      refused(r, 400, "BUILD_REQUEST_INVALID", elsewhere);
      assert.match(String(r.json.error), /^image_repository must be registry\.example:5000\/acme\//);
    }
    await nothingRan(body.app_uuid);
  });

  it("a context or Dockerfile leaving the repository is 422 BUILD_CONTEXT_INVALID in both modes", async () => {
    for (const change of [
      { context: "../outside" },
      { context: "/etc" },
      { context: "a\\..\\.." },
      { dockerfile: "../../etc/passwd" },
      { dockerfile: "/etc/passwd" },
    ]) {
      for (const stream of [false, true]) {
        const r = await post(JSON.stringify({ ...good(), ...change }), stream);
        refused(r, 422, "BUILD_CONTEXT_INVALID", JSON.stringify(change));
      }
    }
    await nothingRan();
  });

  it("a repo_url that is no http(s) URL is refused before cloning", async () => {
    for (const repoUrl of ["file:///etc", "ext::sh -c touch% /tmp/pwned", "not a url", "ssh://git@host/x"]) {
      const r = await post(JSON.stringify({ ...good(), repo_url: repoUrl }));
      refused(r, 400, "BUILD_REQUEST_INVALID", repoUrl);
      assert.match(String(r.json.error), /^repo_url /);
    }
    await nothingRan();
  });

  it("malformed JSON, prototype keys and oversized bodies keep the failure body", async () => {
    refused(await post("{"), 400, "BAD_REQUEST", "malformed JSON");
    const proto = await post(`{"__proto__": {"polluted": true}, "repo_url": "x"}`);
    refused(proto, 400, "BAD_REQUEST", "__proto__");
    const ctor = await post(`{"constructor": {"prototype": {"polluted": true}}}`);
    refused(ctor, 400, "BAD_REQUEST", "constructor.prototype");
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype was polluted");
    const huge = await post(JSON.stringify({ ...good(), manifest_toml: "x".repeat(2 * 1024 * 1024) }));
    refused(huge, 413, "PAYLOAD_TOO_LARGE", "2 MiB body");
    await nothingRan();
  });

  it("a caller in this process is held to the same schema", async () => {
    for (const bad of [{ ref: "--upload-pack=x" }, { tenant: "../x" }, { app_uuid: "nope" }]) {
      await assert.rejects(
        builder.build({ ...good(), ...bad } as never, () => {}),
        (err) => isTabbifyError(err, "BUILD_REQUEST_INVALID") && !err.message.includes(TOKEN),
      );
    }
    await nothingRan();
  });
});
