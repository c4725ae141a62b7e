/**
 * A platform release is an `npm pack` tarball of a built tree: package.json, bin/, the compiled
 * dist/src/ (tests left out) and release.json (commit, build time) for `/api/version`. Nothing
 * is installed or compiled on the host that runs it (node_modules: see docs/DECISIONS.md).
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { releaseStampFile } from "../core/release-info.js";

function exec(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(command, args, { cwd, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err)
        fail(
          new TabbifyError("PACK_FAILED", `${command} ${args.join(" ")}: ${stderr.trim() || err.message}`),
        );
      else done(stdout);
    });
  });
}

/** Copies the built tree at `root` into a fresh staging directory; `version` overrides package.json's. */
export async function stageRelease(root: string, opts: { version?: string } = {}): Promise<string> {
  const stage = await mkdtemp(join(tmpdir(), "tabbify-release-"));
  const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as Record<string, unknown>;
  if (opts.version) pkg.version = opts.version;
  await writeFile(join(stage, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  await cp(join(root, "bin"), join(stage, "bin"), { recursive: true });
  await cp(join(root, "dist", "src"), join(stage, "dist", "src"), {
    recursive: true,
    filter: (src) => !/\.test\.js(\.map)?$/.test(src),
  });
  await cp(join(root, "README.md"), join(stage, "README.md"));
  const commit = await exec("git", ["rev-parse", "HEAD"], root).then(
    (out) => out.trim(),
    () => null,
  );
  await writeFile(
    join(stage, releaseStampFile),
    `${JSON.stringify({ commit, built_at: new Date().toISOString() })}\n`,
  );
  return stage;
}

/** `npm pack` of a staged tree into `outDir` (scripts off); the tarball's path. Removes the stage. */
export async function packStaged(stage: string, outDir: string): Promise<string> {
  try {
    const out = await exec(
      "npm",
      ["pack", "--ignore-scripts", "--json", "--pack-destination", resolve(outDir)],
      stage,
    );
    const [packed] = JSON.parse(out) as { filename: string }[];
    if (!packed) throw new TabbifyError("PACK_FAILED", "npm pack printed no file");
    return join(resolve(outDir), packed.filename);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
