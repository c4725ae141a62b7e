/** One line of a diff: kept, removed from the old text, or added by the new one. */
export interface DiffLine {
  kind: "same" | "del" | "add";
  text: string;
}

/** Past this many lines per side the table would be too big for a page: no diff is computed. */
export const MAX_DIFF_LINES = 3000;

/**
 * A line diff by longest common subsequence (contracts are small): the old lines missing from the
 * new text are `del`, the new ones `add`, in reading order. Undefined when either side is too long.
 */
export function lineDiff(before: string, after: string): DiffLine[] | undefined {
  const a = before === "" ? [] : before.split("\n");
  const b = after === "" ? [] : after.split("\n");
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES) return undefined;
  // lcs[i][j]: the common length of a[i..] and b[j..], in one flat array.
  const width = b.length + 1;
  const lcs = new Uint16Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] =
        a[i] === b[j]
          ? (lcs[(i + 1) * width + j + 1] ?? 0) + 1
          : Math.max(lcs[(i + 1) * width + j] ?? 0, lcs[i * width + j + 1] ?? 0);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push({ kind: "same", text: a[i++] ?? "" });
      j++;
    } else if ((lcs[(i + 1) * width + j] ?? 0) >= (lcs[i * width + j + 1] ?? 0)) {
      out.push({ kind: "del", text: a[i++] ?? "" });
    } else {
      out.push({ kind: "add", text: b[j++] ?? "" });
    }
  }
  while (i < a.length) out.push({ kind: "del", text: a[i++] ?? "" });
  while (j < b.length) out.push({ kind: "add", text: b[j++] ?? "" });
  return out;
}

/** A contract as the page shows it: JSON, two-space indented (keys stay in their canonical order). */
export function prettyJson(value: unknown): string {
  return value === undefined || value === null ? "" : JSON.stringify(value, null, 2);
}
