import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { loadOrCreateSigningKey, signingKeyFileName } from "./keys.js";

const root = await mkdtemp(join(tmpdir(), "tabbify-auth-keys-"));
after(() => rm(root, { recursive: true, force: true }));

test("creates the key on first use with mode 0600 and loads the same key afterwards", async () => {
  const dir = join(root, "first", "nested");
  const created = await loadOrCreateSigningKey(dir);
  assert.equal(created.privateKey.asymmetricKeyType, "ed25519");
  assert.equal((await stat(join(dir, signingKeyFileName))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const loaded = await loadOrCreateSigningKey(dir);
  assert.equal(loaded.kid, created.kid);
  assert.deepEqual(
    loaded.publicKey.export({ format: "der", type: "spki" }),
    created.publicKey.export({ format: "der", type: "spki" }),
  );
});

test("concurrent first callers all end up with the same key", async () => {
  const dir = join(root, "race");
  const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSigningKey(dir)));
  assert.equal(new Set(keys.map((k) => k.kid)).size, 1);
});

test("different data dirs get different keys", async () => {
  const a = await loadOrCreateSigningKey(join(root, "a"));
  const b = await loadOrCreateSigningKey(join(root, "b"));
  assert.notEqual(a.kid, b.kid);
});

test("refuses a key file readable by others, naming the file but not its contents", async () => {
  const dir = join(root, "loose");
  await loadOrCreateSigningKey(dir);
  await chmod(join(dir, signingKeyFileName), 0o644);
  await assert.rejects(loadOrCreateSigningKey(dir), (err) => {
    assert.ok(isTabbifyError(err, "KEY_PERMISSIONS"));
    assert.match(err.message, /chmod 600/);
    assert.doesNotMatch(err.message, /PRIVATE KEY/);
    return true;
  });
});

test("rejects a key file that is not an Ed25519 private key", async () => {
  const dir = join(root, "garbage");
  await loadOrCreateSigningKey(dir);
  await writeFile(
    join(dir, signingKeyFileName),
    "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    {
      mode: 0o600,
    },
  );
  await assert.rejects(loadOrCreateSigningKey(dir), (err) => isTabbifyError(err, "KEY_INVALID"));
});
