import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "esbuild";
import { analyseHandler } from "../contract/analyse.js";
import type { ProofRow } from "../contract/ledger.js";
import { formatCard } from "../contract/render.js";
import { TabbifyError } from "../core/errors.js";
import { recordDeployRow } from "./deploy.js";
import { cachePlugin } from "./deploy-bundle.js";
import { findHandler, otherDeployPath, readDotEnv, serviceName } from "./deploy-discover.js";

/**
 * `tcli deploy --local`: `.tabbify/deploy/<service>`, one Node single-executable application that
 * serves the handler on PORT with the same contract enforcement as a hosted deploy. It is built
 * from one esbuild bundle (the handler host + the handler + the `.env` values of the contract's
 * names, which the running environment may override), blessed by `node
 * --experimental-sea-config` and injected into a copy of this node binary with postject. No
 * request leaves the machine.
 */

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
/** The SEA fuse Node looks for (node's own docs for single-executable applications). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

export interface LocalDeployResult {
  binary: string;
  service: string;
  contractSha: string;
  row: ProofRow;
  card: string;
  bytes: number;
}

export async function deployLocal(dir: string): Promise<LocalDeployResult> {
  const handler = await findHandler(dir);
  if (!handler) {
    throw new TabbifyError("HANDLER_NOT_FOUND", (await otherDeployPath(dir)) ?? `no handler file in ${dir}`);
  }
  const service = await serviceName(dir);
  const env = await readDotEnv(dir);
  const analysis = await analyseHandler(handler);
  const { contract } = analysis;
  const names = contract.env.dynamic ? Object.keys(env) : contract.env.literal.filter((n) => n in env);
  const baked: Record<string, string> = {};
  for (const n of names) baked[n] = env[n]!;

  const work = resolve(dir, ".tabbify", "build", service, "sea");
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true, mode: 0o700 });
  const hostModule = join(here, "..", "contract", "handler-host.js");
  const config = {
    egress: contract.egress.dynamic ? "*" : contract.egress.hosts,
    cache: contract.cache.dynamic ? "*" : contract.cache.namespaces,
  };
  // The env module is imported first, so the handler's module-level reads already see it.
  await writeFile(
    join(work, "env.mjs"),
    `const baked = ${JSON.stringify(baked)};\nfor (const [k, v] of Object.entries(baked)) if (process.env[k] === undefined) process.env[k] = v;\n`,
    { mode: 0o600 },
  );
  await writeFile(
    join(work, "entry.mjs"),
    [
      `import "./env.mjs";`,
      `import * as handlerModule from ${JSON.stringify(resolve(handler))};`,
      `import { runHandlerHost } from ${JSON.stringify(hostModule)};`,
      `runHandlerHost(async () => handlerModule, ${JSON.stringify(config)}, process.env).catch((err) => {`,
      `  process.stderr.write(String(err && err.stack || err) + "\\n");`,
      `  process.exit(1);`,
      `});`,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const bundle = join(work, "sea.cjs");
  try {
    await build({
      entryPoints: [join(work, "entry.mjs")],
      outfile: bundle,
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      logLevel: "silent",
      plugins: [cachePlugin],
    });
  } catch (err) {
    throw new TabbifyError(
      "BUNDLE_FAILED",
      `bundling the handler failed: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  const blob = join(work, "sea.blob");
  await writeFile(
    join(work, "sea-config.json"),
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true }),
  );
  await run(process.execPath, ["--experimental-sea-config", join(work, "sea-config.json")], { cwd: work });
  const binary = resolve(dir, ".tabbify", "deploy", service);
  await mkdir(dirname(binary), { recursive: true });
  await rm(binary, { force: true });
  await copyFile(process.execPath, binary);
  // It carries .env values: readable by its owner only.
  await chmod(binary, 0o700);
  const postject = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  try {
    await run(process.execPath, [postject, binary, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE], {
      maxBuffer: 4 * 1024 * 1024,
    });
  } catch (err) {
    await rm(binary, { force: true });
    throw new TabbifyError(
      "SEA_FAILED",
      `injecting the bundle into the executable failed: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  await rm(work, { recursive: true, force: true });

  const { row, baseline } = await recordDeployRow(dir, handler, service, analysis);
  const { size } = await import("node:fs/promises").then((fs) => fs.stat(binary));
  return {
    binary,
    service,
    contractSha: analysis.contractSha,
    row,
    card: formatCard(row, baseline),
    bytes: size,
  };
}
