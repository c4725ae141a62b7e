import { readFile } from "node:fs/promises";
import { delimiter, join, relative } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { pathExists } from "../core/exists.js";

/**
 * Before `tcli push` claims a version or runs docker: every file a Dockerfile's `COPY`/`ADD`
 * names must be in the build context, which is all `docker build` sees. A missing one fails the
 * push here with the line and what to run, instead of a docker error after the upload began
 * (examples/hello-docker needs a static busybox copied in). Sources with wildcards, variables,
 * URLs or `--from` are docker's to resolve and are not checked.
 */
export async function checkCopySources(
  appDir: string,
  build: { dockerfile: string; context: string; hostPrograms?: string[] },
  path: string | undefined = process.env.PATH,
): Promise<Array<{ name: string; path: string }>> {
  const context = join(appDir, build.context);
  const programs: Array<{ name: string; path: string }> = [];
  for (const name of build.hostPrograms ?? []) {
    const found = await findOnPath(name, path);
    if (!found) {
      throw new TabbifyError(
        "BUILD_CONTEXT_INCOMPLETE",
        `[build] host_programs: ${name} is not on this machine's PATH; install it (a static build: a FROM scratch image has no libraries, e.g. Debian's busybox-static for busybox)`,
      );
    }
    programs.push({ name, path: found });
  }
  const added = new Set(programs.map((p) => p.name));
  const text = await readFile(join(appDir, build.dockerfile), "utf8");
  for (const { line, instruction, sources } of copyInstructions(text)) {
    for (const source of sources) {
      if (/[*?[$]/.test(source) || /^[a-z]+:\/\//i.test(source)) continue;
      if (added.has(source.replace(/^\.\//, ""))) continue;
      if (await pathExists(join(context, source))) continue;
      const shown = relative(process.cwd(), context) || ".";
      const program = await findOnPath(source, path);
      const hint = program
        ? `: cp "$(command -v ${source})" ${join(shown, source)}, or list it in [build] host_programs`
        : `: put ${source} into ${shown} first`;
      throw new TabbifyError(
        "BUILD_CONTEXT_INCOMPLETE",
        `${build.dockerfile}:${line}: ${instruction} ${source}: ${source} is not in the build context ${shown}, the only directory docker build sees${hint}`,
      );
    }
  }
  return programs;
}

/** `COPY`/`ADD` instructions with their first line and source paths (continuations joined). */
export function copyInstructions(
  text: string,
): Array<{ line: number; instruction: string; sources: string[] }> {
  const out: Array<{ line: number; instruction: string; sources: string[] }> = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let full = lines[i]!;
    while (full.endsWith("\\") && i + 1 < lines.length) full = `${full.slice(0, -1)} ${lines[++i]!}`;
    const m = /^\s*(COPY|ADD)\s+(.*)$/i.exec(full);
    if (!m) continue;
    const words = splitArgs(m[2]!);
    if (words.some((w) => /^--from=/i.test(w))) continue;
    const paths = words.filter((w) => !w.startsWith("--"));
    if (paths.length >= 2)
      out.push({ line: first, instruction: m[1]!.toUpperCase(), sources: paths.slice(0, -1) });
  }
  return out;
}

function splitArgs(rest: string): string[] {
  const trimmed = rest.trim();
  if (trimmed.startsWith("[")) {
    try {
      const list = JSON.parse(trimmed) as unknown;
      if (Array.isArray(list) && list.every((w) => typeof w === "string")) return list;
    } catch {
      // Not JSON: docker reads it as the shell form.
    }
  }
  return trimmed.split(/\s+/).filter(Boolean);
}

/** Where `name` (a bare file name) is on PATH, or undefined. */
async function findOnPath(name: string, path: string | undefined): Promise<string | undefined> {
  if (name.includes("/") || !path) return undefined;
  for (const dir of path.split(delimiter)) {
    if (dir && (await pathExists(join(dir, name)))) return join(dir, name);
  }
  return undefined;
}
