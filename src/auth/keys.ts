import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import { link, mkdir, open, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { calculateJwkThumbprint, exportJWK } from "jose";
import { isErrno, TabbifyError } from "../core/errors.js";

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** RFC 7638 thumbprint of the public key: names the key in token headers without revealing it. */
  kid: string;
}

export const signingKeyFileName = "signing-key.pem";

/**
 * The Ed25519 key that signs tenant tokens, kept as PKCS#8 PEM in `<dataDir>/signing-key.pem`
 * (mode 0600; the directory is created 0700). The first caller creates it; concurrent first
 * callers (say `auth token` racing a starting server) end up with the same key, because the file
 * is published with link(2), which never overwrites.
 */
export async function loadOrCreateSigningKey(dataDir: string): Promise<SigningKey> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, signingKeyFileName);
  let pem = await readKeyFile(path);
  if (pem === undefined) {
    await publishNewKey(path);
    pem = await readKeyFile(path);
    if (pem === undefined)
      throw new TabbifyError("KEY_INVALID", `signing key ${path} vanished after creation`);
  }
  return keyFromPem(pem, path);
}

async function readKeyFile(path: string): Promise<string | undefined> {
  try {
    const info = await stat(path);
    // A key others can read is a key others may have copied: refuse it rather than sign with it.
    if ((info.mode & 0o077) !== 0) {
      throw new TabbifyError(
        "KEY_PERMISSIONS",
        `signing key ${path} is accessible by group or others (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      );
    }
    return await readFile(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

async function publishNewKey(path: string): Promise<void> {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    // Another process published its key first; that one wins and ours is discarded.
    if (!isErrno(err, "EEXIST")) throw err;
  } finally {
    await unlink(tmp);
  }
}

async function keyFromPem(pem: string, path: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    // The parser's message is dropped on purpose: it may quote the file's contents.
    throw new TabbifyError("KEY_INVALID", `signing key ${path} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new TabbifyError(
      "KEY_INVALID",
      `signing key ${path} is a ${privateKey.asymmetricKeyType ?? "unknown"} key, not Ed25519`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { privateKey, publicKey, kid };
}
