import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import { checkRepoUrl, parseHttpRepoUrl, privateReason, type RepoUrlPolicy } from "./repo-url.js";

test("parseHttpRepoUrl takes http(s) URLs and says why it refuses the rest", () => {
  assert.equal((parseHttpRepoUrl("https://github.com/acme/app.git") as { url: URL }).url.host, "github.com");
  assert.ok("url" in parseHttpRepoUrl("http://127.0.0.1:3000/acme/app.git"));
  assert.deepEqual(parseHttpRepoUrl("not a url"), { problem: "repo_url is not a URL" });
  assert.deepEqual(parseHttpRepoUrl("file:///etc"), {
    problem: "repo_url must be an http(s) URL, not file:",
  });
  assert.deepEqual(parseHttpRepoUrl("ext::sh -c id"), {
    problem: "repo_url must be an http(s) URL, not ext:",
  });
});

describe("privateReason", () => {
  it("names loopback, link-local, unspecified and mesh addresses, in every IPv6 spelling", () => {
    const cases: [string, string | undefined][] = [
      ["127.0.0.1", "loopback"],
      ["127.44.5.6", "loopback"],
      ["169.254.169.254", "link-local"],
      ["0.0.0.0", "unspecified"],
      ["::", "unspecified"],
      ["::1", "loopback"],
      ["0:0:0:0:0:0:0:1", "loopback"],
      ["fe80::1", "link-local"],
      ["febf::1", "link-local"],
      ["::ffff:127.0.0.1", "loopback"],
      ["::ffff:7f00:1", "loopback"],
      ["::ffff:169.254.169.254", "link-local"],
      ["::127.0.0.1", "loopback"],
      ["fd5a:1f00:0:3::1", "platform mesh"],
      ["fd5a:1f02:44a5:240b:121a::1", "platform mesh"],
      ["140.82.112.3", undefined],
      ["10.0.0.8", undefined],
      ["2606:4700::1111", undefined],
      ["fd5a:1f01::1", undefined],
      ["fec0::1", undefined],
    ];
    for (const [ip, reason] of cases) assert.equal(privateReason(ip), reason, ip);
  });
});

describe("checkRepoUrl", () => {
  const names: Record<string, string[]> = {
    "github.com": ["140.82.112.3"],
    "rebind.example": ["140.82.112.4", "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "node.internal": ["10.1.2.3"],
  };
  const policy: RepoUrlPolicy = {
    allowPrivate: false,
    platformHosts: () => ["node.internal:8090", "[fd00::5]:5000", "10.9.9.9"],
    resolve: async (host) => {
      const found = names[host];
      if (!found) throw new Error("ENOTFOUND");
      return found;
    },
  };
  const refused = async (url: string, pattern: RegExp) => {
    const got = await checkRepoUrl(url, policy);
    assert.ok("problem" in got, `${url} must be refused`);
    assert.match(got.problem, pattern, url);
  };

  it("takes a public host and returns the addresses to pin the clone to", async () => {
    const got = await checkRepoUrl("https://github.com/acme/app.git", policy);
    assert.deepEqual("addresses" in got && got.addresses, ["140.82.112.3"]);
  });

  it("refuses loopback, link-local and the numeric IPv4 spellings of them", async () => {
    await refused("http://127.0.0.1:3000/r.git", /127\.0\.0\.1, a loopback address/);
    await refused("http://localhost/r.git", /does not resolve|loopback/);
    await refused("http://169.254.169.254/latest/meta-data/", /link-local/);
    await refused("http://2130706433/r.git", /127\.0\.0\.1, a loopback/);
    await refused("http://0x7f.1/r.git", /127\.0\.0\.1, a loopback/);
    await refused("http://017700000001/r.git", /loopback/);
    await refused("http://0/r.git", /unspecified/);
    await refused("http://[::1]/r.git", /loopback/);
    await refused("http://[::ffff:127.0.0.1]/r.git", /loopback/);
    await refused("http://[::ffff:a9fe:a9fe]/r.git", /link-local/);
    await refused("http://[fe80::1]/r.git", /link-local/);
    await refused("http://[fd5a:1f02:44a5:240b:121a::1]:8730/", /platform mesh/);
  });

  it("checks every address a name resolves to", async () => {
    await refused("https://metadata.example/x.git", /metadata\.example \(169\.254\.169\.254\), a link-local/);
    await refused("https://rebind.example/x.git", /rebind\.example \(127\.0\.0\.1\)/);
    await refused("https://nowhere.example/x.git", /does not resolve/);
  });

  it("refuses the platform's own listen addresses, named or literal", async () => {
    await refused("http://10.1.2.3:8090/x.git", /the platform's own address/);
    await refused("http://10.9.9.9:5000/x.git", /the platform's own address/);
    await refused("http://[fd00::5]/x.git", /the platform's own address/);
  });

  it("allows all of it with allowPrivate, still only http(s)", async () => {
    const open = { ...policy, allowPrivate: true };
    assert.ok("url" in (await checkRepoUrl("http://127.0.0.1:3000/r.git", open)));
    assert.ok("problem" in (await checkRepoUrl("file:///etc/passwd", open)));
    // Nothing to look for in a name's addresses: no lookup, and no pinning for the clone.
    const unresolvable = await checkRepoUrl("https://no-such-host.invalid/r.git", {
      ...open,
      resolve: async () => {
        throw new Error("ENOTFOUND");
      },
    });
    assert.ok("url" in unresolvable);
    assert.deepEqual(unresolvable.addresses, []);
  });
});
