import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";

/**
 * `~/.tabbify/credentials`: one token per node URL, JSON, the directory 0700 and the file 0600.
 * Written whole to a temp file (created 0600) and renamed in, so a crash never leaves half a file
 * and no moment exists where the token is readable by others.
 */

export interface CredentialsFile {
  nodes: Record<string, { token: string; saved_at: string }>;
}

export function credentialsDir(home: string): string {
  return join(home, ".tabbify");
}

export function credentialsPath(home: string): string {
  return join(credentialsDir(home), "credentials");
}

export async function readCredentials(home: string): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(credentialsPath(home), "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return { nodes: {} };
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as CredentialsFile;
    if (
      typeof parsed !== "object" ||
      parsed === null ||
      typeof parsed.nodes !== "object" ||
      parsed.nodes === null
    ) {
      throw new Error("no nodes");
    }
    return parsed;
  } catch {
    throw new TabbifyError(
      "CREDENTIALS_INVALID",
      `${credentialsPath(home)} is not a tcli credentials file: remove it and run \`tcli login\` again`,
    );
  }
}

/** The saved token for `nodeUrl`, if any. */
export async function savedToken(home: string, nodeUrl: string): Promise<string | undefined> {
  return (await readCredentials(home)).nodes[nodeUrl]?.token;
}

export async function saveToken(
  home: string,
  nodeUrl: string,
  token: string,
  now = new Date(),
): Promise<string> {
  const file = await readCredentials(home);
  file.nodes[nodeUrl] = { token, saved_at: now.toISOString() };
  await writeCredentials(home, file);
  return credentialsPath(home);
}

/** Forgets `nodeUrl`'s token; true when there was one. The file goes when it holds none. */
export async function forgetToken(home: string, nodeUrl: string): Promise<boolean> {
  const file = await readCredentials(home);
  if (!(nodeUrl in file.nodes)) return false;
  delete file.nodes[nodeUrl];
  if (Object.keys(file.nodes).length === 0) await rm(credentialsPath(home), { force: true });
  else await writeCredentials(home, file);
  return true;
}

async function writeCredentials(home: string, file: CredentialsFile): Promise<void> {
  const dir = credentialsDir(home);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // An existing directory keeps its mode through mkdir; tighten it.
  await chmod(dir, 0o700);
  const temp = join(dir, `.credentials.${process.pid}.tmp`);
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, credentialsPath(home));
}
