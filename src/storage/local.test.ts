import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storageDriverSuite } from "./driver-suite.js";
import { LocalDriver } from "./local.js";

storageDriverSuite("local", async () => {
  const root = await mkdtemp(join(tmpdir(), "tabbify-local-driver-"));
  return {
    driver: new LocalDriver(root),
    twin: async () => new LocalDriver(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});
