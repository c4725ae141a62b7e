import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { promisify } from "node:util";
import { isErrno, TabbifyError } from "../core/errors.js";

/**
 * What `tcli deploy` finds in a directory: the handler file, the service name and the runtime
 * env from `.env`. Nothing here touches the network.
 */

export const HANDLER_NAMES = ["handler.ts", "handler.tsx", "handler.jsx", "handler.js"] as const;

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The first of handler.ts|tsx|jsx|js in the directory, then under src/. */
export async function findHandler(dir: string): Promise<string | undefined> {
  for (const sub of ["", "src"]) {
    for (const name of HANDLER_NAMES) {
      const path = join(dir, sub, name);
      if (await isFile(path)) return path;
    }
  }
  return undefined;
}

/** A directory with a Dockerfile or manifest.toml and no handler deploys another way. */
export async function otherDeployPath(dir: string): Promise<string | undefined> {
  if ((await isFile(join(dir, "Dockerfile"))) && (await isFile(join(dir, "tabbify.toml")))) {
    return "this directory has a Dockerfile and tabbify.toml: deploy it with git (git push tabbify main, or POST /v1/deploy)";
  }
  if (await isFile(join(dir, "manifest.toml")))
    return `this directory has a manifest.toml: publish it with tcli push ${dir}`;
  return undefined;
}

/** Lowercase, dashes for anything else, no leading/trailing dashes, at most 63 characters. */
export function slugify(name: string): string {
  const slug = name
    .replace(/^@[^/]+\//, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return slug === "" ? "handler" : slug;
}

const run = promisify(execFile);

/** package.json `name`, else the git origin's basename, else the directory's name; slugified. */
export async function serviceName(dir: string): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { name?: unknown };
    if (typeof pkg.name === "string" && pkg.name.trim() !== "") return slugify(pkg.name);
  } catch {
    // no package.json, or one without a name
  }
  try {
    const { stdout } = await run("git", ["-C", dir, "remote", "get-url", "origin"], { timeout: 5_000 });
    const url = stdout.trim();
    if (url !== "") return slugify(basename(url.replace(/\/+$/, "")).replace(/\.git$/, ""));
  } catch {
    // not a git checkout, or no origin
  }
  return slugify(basename(join(process.cwd(), dir)));
}

/**
 * `KEY=value` lines of `.env` (comments, blank lines and `export ` allowed; values may be single
 * or double quoted). A missing file is no env; a malformed line is `.env:LINE: why`.
 */
export async function readDotEnv(dir: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(join(dir, ".env"), "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return {};
    throw err;
  }
  return parseDotEnv(text);
}

export function parseDotEnv(text: string, file = ".env"): Record<string, string> {
  const env: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      const why = line.includes("=")
        ? "the name must be letters, digits and _ (not starting with a digit)"
        : "expected KEY=value";
      throw new TabbifyError("DOTENV_INVALID", `${file}:${i + 1}: ${why}`);
    }
    let value = m[2]!;
    const quote = value[0];
    if (quote === '"' || quote === "'") {
      if (value.length < 2 || !value.endsWith(quote)) {
        throw new TabbifyError(
          "DOTENV_INVALID",
          `${file}:${i + 1}: unterminated ${quote === '"' ? "double" : "single"} quote`,
        );
      }
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else value = value.replace(/\s+#.*$/, "");
    env[m[1]!] = value;
  }
  return env;
}
