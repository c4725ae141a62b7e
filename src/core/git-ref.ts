/**
 * Why `ref` is not a ref a deploy or a build may name (a branch, a tag or a commit sha), or
 * undefined. Never something git could read as an option, and only characters and shapes git
 * itself accepts in a ref, so it can be passed to git after `--` without surprise.
 */
/**
 * The same rule as one regular expression, for route schemas (a JSON Schema `pattern`): only the
 * characters and shapes {@link checkGitRef} accepts.
 */
export const GIT_REF_PATTERN = "^(?!-)(?!/)(?!.*\\.\\.)(?!.*//)(?!.*/$)(?!.*\\.lock$)[A-Za-z0-9._/-]+$";

export function checkGitRef(ref: string): string | undefined {
  if (ref === "") return "ref is empty";
  if (ref.startsWith("-")) return "ref must not begin with '-'";
  if (
    !/^[A-Za-z0-9._/-]+$/.test(ref) ||
    ref.includes("..") ||
    ref.includes("//") ||
    ref.startsWith("/") ||
    ref.endsWith("/") ||
    ref.endsWith(".lock")
  ) {
    return "ref must be a branch, tag or commit sha";
  }
  return undefined;
}
