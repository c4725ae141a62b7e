import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { appendProofRow, type ProofRow, parseProofRow, resolveRef, scanLedger } from "./ledger.js";
import { exportMarkdown, exportSvg, formatCard, formatDiff, formatListRow } from "./render.js";
import type { Facts } from "./types.js";
import { verdictOf } from "./verdict.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function facts(over: Partial<Facts> = {}, props: Partial<Facts["properties"]> = {}): Facts {
  return {
    contractSha: "a".repeat(64),
    proofLevel: "complete",
    envKeys: ["GREETING"],
    egressHosts: [],
    cacheNamespaces: [],
    capabilities: ["env"],
    routes: [{ pattern: "/", isPrefix: true }],
    properties: {
      retrySafe: true,
      readOnly: true,
      deterministic: true,
      injectionSafe: false,
      idempotent: true,
      stateIsolated: true,
      noSecretLeakage: true,
      noCredentialLeakage: false,
      inputValidated: false,
      piiContained: false,
      resultsSafe: false,
      faultCovered: false,
      ...props,
    },
    declaredSpecs: [],
    intentAssertionCount: 0,
    intentDynamic: false,
    behaviorPathCount: 1,
    failurePathCount: 0,
    ...over,
  };
}

const row = (f: Facts, ts = 1_700_000_000_000): ProofRow => ({
  ts,
  kind: "deploy",
  handlerPath: "handler.ts",
  serviceName: "hello-handler",
  facts: f,
});

describe("verdicts", () => {
  test("no baseline and no change are safe", () => {
    assert.equal(verdictOf(undefined, facts()).verdict, "safe");
    assert.equal(verdictOf(facts(), facts()).verdict, "safe");
  });
  test("additions: a new route, env, host, a gained property, a better proof level", () => {
    for (const next of [
      facts({
        routes: [
          { pattern: "/", isPrefix: true },
          { pattern: "/x", isPrefix: false },
        ],
      }),
      facts({ envKeys: ["GREETING", "NEW"] }),
      facts({ egressHosts: ["api.example.com"] }),
      facts({}, { inputValidated: true }),
    ]) {
      assert.equal(verdictOf(facts(), next).verdict, "safe_with_additions");
    }
    assert.equal(verdictOf(facts({ proofLevel: "partial" }), facts()).verdict, "safe_with_additions");
  });
  test("breaking: a removal, a lost property, a proof level drop; a route is pattern + isPrefix", () => {
    for (const next of [
      facts({ envKeys: [] }),
      facts({}, { readOnly: false }),
      facts({ proofLevel: "partial" }),
      facts({ routes: [{ pattern: "/", isPrefix: false }] }),
    ]) {
      assert.equal(verdictOf(facts(), next).verdict, "breaking", JSON.stringify(next.routes));
    }
  });
});

describe("ledger", () => {
  test("append, scan and resolve HEAD, HEAD~N and a sha prefix", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tbf-ledger-"));
    dirs.push(dir);
    const file = join(dir, ".tabbify", "proofs.jsonl");
    const shas = ["1111", "2222", "3333"].map((p) => p.padEnd(64, "0"));
    for (const [i, sha] of shas.entries())
      await appendProofRow(file, row(facts({ contractSha: sha }), 1000 + i));
    assert.equal(await scanLedger(file, () => {}), 3);
    const head = await resolveRef(file, "HEAD");
    assert.equal(head.row.facts.contractSha, shas[2]);
    assert.equal(head.baseline?.facts.contractSha, shas[1]);
    const back = await resolveRef(file, "HEAD~2");
    assert.equal(back.row.facts.contractSha, shas[0]);
    assert.equal(back.baseline, undefined);
    assert.equal((await resolveRef(file, "2222")).row.facts.contractSha, shas[1]);
    await assert.rejects(resolveRef(file, "HEAD~3"), (e) => isTabbifyError(e, "REF_NOT_FOUND"));
    await assert.rejects(resolveRef(file, "9999"), (e) => isTabbifyError(e, "REF_NOT_FOUND"));
    await appendProofRow(file, row(facts({ contractSha: "2222ff".padEnd(64, "1") })));
    await assert.rejects(resolveRef(file, "2222"), (e) => isTabbifyError(e, "REF_AMBIGUOUS"));
    await assert.rejects(resolveRef(join(dir, "none.jsonl"), "HEAD"), (e) =>
      isTabbifyError(e, "LEDGER_EMPTY"),
    );
  });
  test("a line without ts, kind, handlerPath or facts, or with an unknown kind, is InvalidLedgerLine", async () => {
    const good = row(facts());
    for (const bad of [
      { ...good, ts: undefined },
      { ...good, kind: undefined },
      { ...good, kind: "rumour" },
      { ...good, handlerPath: undefined },
      { ...good, facts: undefined },
    ]) {
      assert.throws(
        () => parseProofRow(JSON.stringify(bad), "p:1"),
        (e) => isTabbifyError(e, "INVALID_LEDGER_LINE"),
      );
    }
    const dir = await mkdtemp(join(tmpdir(), "tbf-ledger-"));
    dirs.push(dir);
    await writeFile(join(dir, "p.jsonl"), `${JSON.stringify(good)}\nnot json\n`);
    await assert.rejects(
      scanLedger(join(dir, "p.jsonl"), () => {}),
      (e) => isTabbifyError(e, "INVALID_LEDGER_LINE") && e.message.includes("p.jsonl:2"),
    );
  });
});

describe("renderings", () => {
  const base = row(facts({ contractSha: "b".repeat(64) }));
  const next = row(
    facts(
      {
        contractSha: "c".repeat(64),
        envKeys: ["API_URL", "GREETING"],
        routes: [
          { pattern: "/", isPrefix: true },
          { pattern: "/health", isPrefix: false },
        ],
        proofLevel: "partial",
      },
      { inputValidated: true },
    ),
  );
  test("markdown receipt: the SEED-FACTS sections and change lines", () => {
    assert.equal(
      exportMarkdown(next, base),
      [
        "## Proof review",
        "",
        "- Verdict: breaking",
        "- Handler: handler.ts",
        "- Service: hello-handler",
        "- Kind: deploy",
        `- Contract: ${"c".repeat(64)}`,
        "- Proof level: partial",
        `- Baseline: ${"b".repeat(64)}`,
        "",
        "### Proven properties",
        "",
        "- retrySafe",
        "- readOnly",
        "- deterministic",
        "- idempotent",
        "- stateIsolated",
        "- noSecretLeakage",
        "- inputValidated",
        "",
        "### Surface",
        "",
        "- Routes: /*, /health",
        "- Env: API_URL, GREETING",
        "- Egress: (none)",
        "- Cache: (none)",
        "- Capabilities: env",
        "",
        "### Changes",
        "",
        "- + route /health",
        "- + env API_URL",
        "- + property inputValidated",
        "- proof level: complete -> partial",
        "",
      ].join("\n"),
    );
  });
  test("svg pill: 320×30, the verdict's colour, proven · verdict and three properties", () => {
    const cases: [ProofRow | undefined, ProofRow, string, string][] = [
      [undefined, base, "#22c55e", "safe"],
      [
        base,
        row(facts({ contractSha: "d".repeat(64), envKeys: ["GREETING", "X"] })),
        "#3b82f6",
        "safe_with_additions",
      ],
      [base, next, "#ef4444", "breaking"],
    ];
    for (const [b, r, colour, verdict] of cases) {
      const svg = exportSvg(r, b);
      assert.match(svg, /<svg [^>]*width="320" height="30"/);
      assert.ok(svg.includes(`fill="${colour}"`), svg);
      assert.ok(svg.includes(`>proven · ${verdict} · retrySafe · readOnly · deterministic</text>`), svg);
    }
  });
  test("list row, card and diff", () => {
    assert.equal(
      formatListRow(next, base),
      `2023-11-14T22:13:20.000Z  deploy  cccccccc  breaking             2r/2e/0h/0c/1cap\n`,
    );
    const card = formatCard(next, base);
    for (const want of [
      "Proof review · breaking",
      "proof level  partial",
      "routes       /*, /health",
      "+ env API_URL",
    ])
      assert.ok(card.includes(want), card);
    assert.equal(
      formatDiff(base, next),
      "bbbbbbbb -> cccccccc: breaking\n  + route /health\n  + env API_URL\n  + property inputValidated\n  proof level: complete -> partial\n",
    );
  });
});

describe("contract labels", () => {
  test("dev.tabbify.contract.* carry the sha, lists and proven properties", async () => {
    const { contractLabels } = await import("./labels.js");
    const { unprovenContract } = await import("./analyse.js");
    const c = unprovenContract();
    c.env = { literal: ["A", "B"], dynamic: false };
    c.routes = [{ pattern: "/api/", isPrefix: true }];
    c.routesDynamic = false;
    c.properties.readOnly = true;
    const labels = contractLabels(c, "f".repeat(64));
    assert.equal(labels["dev.tabbify.contract.sha"], "f".repeat(64));
    assert.equal(labels["dev.tabbify.contract.env"], "A,B");
    assert.equal(labels["dev.tabbify.contract.egress"], "*");
    assert.equal(labels["dev.tabbify.contract.routes"], "/api/*");
    assert.equal(labels["dev.tabbify.contract.properties"], "hasEgress,readOnly");
  });
});
