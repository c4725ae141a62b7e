import assert from "node:assert/strict";
import { spawnTabbify } from "./tools.js";

/** `tabbify mesh token --data DIR …`: the token on the last line. */
export async function mintToken(dataDir: string, args: string[]): Promise<string> {
  const proc = spawnTabbify(["mesh", "token", "--data", dataDir, ...args]);
  const code = await proc.exited;
  const out = proc.output();
  assert.equal(code, 0, out);
  return out.trim().split("\n").at(-1) as string;
}
