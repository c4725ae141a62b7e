import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { registryApiSuite } from "./apps-registry-suite.js";

const root = mkdtempSync(join(tmpdir(), "tabbify-apps-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

registryApiSuite({
  name: "sqlite",
  nodeOptions: async () => ({ dataDir: join(root, `node${++n}`) }),
  // The database file and its WAL, byte for byte.
  fingerprint: async (_node, { dataDir }) => {
    const hash = createHash("sha256");
    for (const file of ["node.db", "node.db-wal"]) {
      const path = join(dataDir, file);
      hash.update(file).update(existsSync(path) ? readFileSync(path) : Buffer.alloc(0));
    }
    return hash.digest("hex");
  },
});
