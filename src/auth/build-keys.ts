import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";
import { isValidTenant } from "./namespace.js";

/** A tenant's build key: ECDSA P-256, the key type cosign generates and verifies by default. */
export interface BuildKey {
  tenant: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SPKI PEM, what `cosign verify --key` and a `sigstoreSigned` policy's keyPath take. */
  publicPem: string;
}

/**
 * The tenant's build key in `<dir>/build-keys/<tenant>.pem` (PKCS#8, 0600, in a 0700 dir),
 * created on first use. A key file others may read is refused (KEY_FILE_EXPOSED): a signing key
 * is only as private as its file.
 */
export async function loadOrCreateBuildKey(dir: string, tenant: string): Promise<BuildKey> {
  if (!isValidTenant(tenant))
    throw new TabbifyError("TENANT_INVALID", `tenant "${tenant.slice(0, 100)}" is not valid`);
  const keysDir = join(dir, "build-keys");
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const path = join(keysDir, `${tenant}.pem`);
  let pem: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      throw new TabbifyError(
        "KEY_FILE_EXPOSED",
        `${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      );
    }
    pem = await readFile(path, "utf8");
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    try {
      await writeFile(path, pem, { mode: 0o600, flag: "wx" });
    } catch (writeErr) {
      // Another process created it first: its key is the tenant's key.
      if (!isErrno(writeErr, "EEXIST")) throw writeErr;
      pem = await readFile(path, "utf8");
    }
  }
  const privateKey = createPrivateKey(pem);
  const publicKey = createPublicKey(privateKey);
  return {
    tenant,
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}
