import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { isTabbifyError } from "../src/core/errors.js";
import { contentsApiManifestSource, githubAppTokenSource } from "../src/pipeline/clients.js";
import {
  appJwt,
  authenticatedCloneUrl,
  fetchFile,
  installationToken,
  redactUrl,
  repoCoordinates,
} from "../src/pipeline/github.js";
import { createGitRepo, type GitRepo, git } from "./support/git-repo.js";
import { type GithubDouble, startGithubDouble } from "./support/github-double.js";

const APP_ID = "123456";
const INSTALLATION = 7001;
const OTHER_INSTALLATION = 7002;

function rsaPair(): { pkcs1: string; pkcs8: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    pkcs1: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    pkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKey,
  };
}

const DOCKERFILE = "FROM scratch\nCOPY app /app\n";
const TOML = '[app]\nname = "hello"\n\n[[deploy]]\nsupervisor = "alpha"\n';

describe("GitHub App client against the GitHub double", () => {
  let dir: string;
  let double: GithubDouble;
  let privateRepo: GitRepo;
  let publicRepo: GitRepo;
  let sha: string;
  let publicSha: string;
  const keys = rsaPair();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tabbify-gh-"));
    const projectRoot = join(dir, "repos");
    privateRepo = await createGitRepo(projectRoot, "acme", "secret-app");
    publicRepo = await createGitRepo(projectRoot, "acme", "open-app");
    sha = await privateRepo.commit({ Dockerfile: DOCKERFILE, "tabbify.toml": TOML, app: "v1\n" }, "A");
    publicSha = await publicRepo.commit({ "tabbify.toml": TOML, "dir/nested.txt": "n" }, "public");
    double = await startGithubDouble({
      projectRoot,
      appId: APP_ID,
      appPublicKey: keys.publicKey,
      installations: { [INSTALLATION]: ["acme/secret-app"], [OTHER_INSTALLATION]: ["acme/open-app"] },
      privateRepos: ["acme/secret-app"],
    });
  });

  after(async () => {
    await double?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("signs an RS256 app JWT from PKCS#1 and PKCS#8 keys (iat −60 s, exp +9 min)", async () => {
    const now = Date.UTC(2026, 0, 1);
    for (const pem of [keys.pkcs1, keys.pkcs8]) {
      const jwt = await appJwt(APP_ID, pem, now);
      const claims = decodeJwt(jwt);
      assert.equal(claims.iss, APP_ID);
      assert.equal(claims.iat, now / 1000 - 60);
      assert.equal(claims.exp, now / 1000 + 540);
      assert.equal(JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).alg, "RS256");
    }
  });

  it("refuses an unreadable or non-RSA key without quoting it", async () => {
    await assert.rejects(
      appJwt(APP_ID, "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n"),
      (err) => {
        return isTabbifyError(err, "GITHUB_APP_KEY_INVALID") && !String(err).includes("nope");
      },
    );
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    await assert.rejects(appJwt(APP_ID, ec.toString()), (err) =>
      isTabbifyError(err, "GITHUB_APP_KEY_INVALID"),
    );
  });

  it("mints an installation token that the double accepts", async () => {
    const minted = await installationToken(double.apiUrl, await appJwt(APP_ID, keys.pkcs1), INSTALLATION);
    assert.match(minted.token, /^ghs_/);
    assert.ok(Date.parse(minted.expires_at) > Date.now());
    assert.deepEqual(double.requests.at(-1), {
      method: "POST",
      path: `/app/installations/${INSTALLATION}/access_tokens`,
      auth: "app-jwt",
      status: 201,
    });
  });

  it("is refused with a JWT signed by another key, and the error carries no JWT", async () => {
    const jwt = await appJwt(APP_ID, rsaPair().pkcs1);
    await assert.rejects(installationToken(double.apiUrl, jwt, INSTALLATION), (err) => {
      return (
        isTabbifyError(err, "GITHUB_TOKEN_MINT_FAILED") &&
        /answered 401/.test((err as Error).message) &&
        !(err as Error).message.includes(jwt.slice(-20))
      );
    });
    await assert.rejects(
      installationToken(double.apiUrl, await appJwt("999", keys.pkcs1), INSTALLATION),
      (err) => isTabbifyError(err, "GITHUB_TOKEN_MINT_FAILED"),
    );
    await assert.rejects(
      installationToken(double.apiUrl, await appJwt(APP_ID, keys.pkcs1), 404404),
      /answered 404/,
    );
  });

  it("reads a file at a sha through the contents API; a missing file is null", async () => {
    const { token } = await installationToken(double.apiUrl, await appJwt(APP_ID, keys.pkcs8), INSTALLATION);
    const file = await fetchFile(double.apiUrl, token, "acme", "secret-app", "tabbify.toml", sha);
    assert.equal(file?.toString(), TOML);
    assert.equal(await fetchFile(double.apiUrl, token, "acme", "secret-app", "nope.toml", sha), null);
    assert.equal(
      await fetchFile(double.apiUrl, undefined, "acme", "open-app", "dir/nested.txt", publicSha).then(String),
      "n",
    );
    await assert.rejects(
      fetchFile(double.apiUrl, undefined, "acme", "open-app", "dir", publicSha),
      /is a undefined, not a file|not a file/,
    );
  });

  it("hides a private repo from callers without a token (404, as GitHub does) and rejects a bad token (401)", async () => {
    assert.equal(await fetchFile(double.apiUrl, undefined, "acme", "secret-app", "tabbify.toml", sha), null);
    await assert.rejects(
      fetchFile(double.apiUrl, "ghs_made_up", "acme", "secret-app", "tabbify.toml", sha),
      (err) => isTabbifyError(err, "GITHUB_AUTH_FAILED") && !String(err).includes("ghs_made_up"),
    );
    // A token for another installation does not open this repository either.
    const other = await installationToken(
      double.apiUrl,
      await appJwt(APP_ID, keys.pkcs1),
      OTHER_INSTALLATION,
    );
    assert.equal(
      await fetchFile(double.apiUrl, other.token, "acme", "secret-app", "tabbify.toml", sha),
      null,
    );
  });

  it("clones a public repo anonymously over smart HTTP", async () => {
    const into = join(dir, "clone-public");
    await git(["clone", "--quiet", double.cloneUrl("acme/open-app"), into]);
    assert.equal((await git(["rev-parse", "HEAD"], into)).trim(), publicSha);
  });

  it("clones a private repo only with the installation token, checking out the pushed sha", async () => {
    const url = double.cloneUrl("acme/secret-app");
    await assert.rejects(
      git(["clone", "--quiet", url, join(dir, "clone-denied")]),
      /Authentication failed|could not read Username|401/,
    );

    const { token } = await installationToken(double.apiUrl, await appJwt(APP_ID, keys.pkcs1), INSTALLATION);
    const authed = authenticatedCloneUrl(url, token);
    assert.ok(authed.includes("x-access-token:"));
    assert.equal(redactUrl(authed), url);
    const into = join(dir, "clone-private");
    await git(["clone", "--quiet", authed, into]);
    await git(["checkout", "--quiet", sha], into);
    assert.equal(await readFile(join(into, "Dockerfile"), "utf8"), DOCKERFILE);

    // A second commit is fetched into the same clone (negotiation POSTs through http-backend).
    const sha2 = await privateRepo.commit({ app: "v2\n" }, "B");
    await git(["fetch", "--quiet", authed, "main"], into);
    assert.equal((await git(["rev-parse", "FETCH_HEAD"], into)).trim(), sha2);
  });

  it("wires into the pipeline's token and manifest sources", async () => {
    const tokens = githubAppTokenSource(double.apiUrl, APP_ID, keys.pkcs1);
    const { token } = await tokens.installationToken(INSTALLATION);
    const manifests = contentsApiManifestSource(double.apiUrl);
    assert.equal(await manifests.fetchManifest(double.cloneUrl("acme/secret-app"), sha, token), TOML);
    assert.equal(await manifests.fetchManifest(double.cloneUrl("acme/secret-app"), sha, undefined), null);
    assert.throws(
      () => githubAppTokenSource(double.apiUrl, APP_ID, "not a key"),
      (err) => isTabbifyError(err, "GITHUB_APP_KEY_INVALID"),
    );
  });
});

describe("URL helpers", () => {
  it("redacts credentials in URLs and in tool output that quotes them", () => {
    assert.equal(
      redactUrl("https://x-access-token:ghs_abc@github.com/o/r.git"),
      "https://github.com/o/r.git",
    );
    assert.equal(
      redactUrl("fatal: unable to access 'https://x-access-token:ghs_abc@host/o/r.git/': 403"),
      "fatal: unable to access 'https://host/o/r.git/': 403",
    );
    assert.equal(redactUrl("https://github.com/o/r.git"), "https://github.com/o/r.git");
  });

  it("puts the token in as x-access-token and finds owner/repo", () => {
    assert.equal(
      authenticatedCloneUrl("https://github.com/o/r.git", "t0k"),
      "https://x-access-token:t0k@github.com/o/r.git",
    );
    assert.throws(
      () => authenticatedCloneUrl("git@github.com:o/r.git", "t"),
      (err) => isTabbifyError(err, "REPO_URL_INVALID"),
    );
    assert.deepEqual(repoCoordinates("https://github.com/o/r.git"), { owner: "o", repo: "r" });
    assert.deepEqual(repoCoordinates("https://ghe.example/api/v3/../o/r"), { owner: "o", repo: "r" });
  });
});
