import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isTabbifyError } from "./errors.js";
import { loadOrCreateKeyFile, readKeyFile } from "./key-file.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tbf-keyfile-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("loadOrCreateKeyFile creates a 0600 key once and reads the same key after", async () => {
  const path = join(dir, "api.key");
  const first = await loadOrCreateKeyFile(path);
  assert.equal(first.created, true);
  assert.match(first.key, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await readFile(path, "utf8")).trim(), first.key);
  const again = await loadOrCreateKeyFile(path);
  assert.deepEqual(again, { key: first.key, created: false });
});

test("concurrent first starts agree on one key", async () => {
  const path = join(dir, "race.key");
  const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateKeyFile(path)));
  assert.equal(new Set(keys.map((k) => k.key)).size, 1);
  assert.equal(keys.filter((k) => k.created).length, 1);
});

test("readKeyFile refuses a key file group or others may read, naming the fix, not the key", async () => {
  const path = join(dir, "exposed.key");
  await writeFile(path, "secret-value\n");
  for (const mode of [0o644, 0o640, 0o604]) {
    await chmod(path, mode);
    await assert.rejects(
      readKeyFile(path),
      (err: unknown) =>
        isTabbifyError(err, "KEY_FILE_EXPOSED") &&
        err.message.includes(`chmod 600 ${path}`) &&
        !err.message.includes("secret-value"),
    );
  }
  await chmod(path, 0o600);
  assert.equal(await readKeyFile(path), "secret-value");
});

test("readKeyFile refuses an empty key file", async () => {
  const path = join(dir, "empty.key");
  await writeFile(path, "\n", { mode: 0o600 });
  await assert.rejects(readKeyFile(path), (err: unknown) => isTabbifyError(err, "KEY_FILE_INVALID"));
});
