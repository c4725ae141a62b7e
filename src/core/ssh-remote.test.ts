import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isSshRepoUrl, parseSshRemote } from "./ssh-remote.js";

describe("ssh remotes", () => {
  it("normalises every accepted form to ssh://", () => {
    const table: [string, string][] = [
      ["ssh://git@git.example.com/team/app.git", "ssh://git@git.example.com/team/app.git"],
      ["ssh://git@git.example.com:2222/team/app.git", "ssh://git@git.example.com:2222/team/app.git"],
      ["git+ssh://git@git.example.com/team/app.git", "ssh://git@git.example.com/team/app.git"],
      ["ssh+git://git.example.com/team/app", "ssh://git.example.com/team/app"],
      ["git@git.example.com:team/app.git", "ssh://git@git.example.com/team/app.git"],
      ["deploy@10.0.0.5:/srv/git/app.git", "ssh://deploy@10.0.0.5/srv/git/app.git"],
    ];
    for (const [raw, want] of table) {
      assert.equal(isSshRepoUrl(raw), true, raw);
      const got = parseSshRemote(raw);
      assert.ok(!("problem" in got), `${raw}: ${JSON.stringify(got)}`);
      assert.equal(got.url, want, raw);
    }
  });

  it("refuses option injection, passwords, queries and odd characters", () => {
    for (const raw of [
      "ssh://-oProxyCommand=touch%20x/a.git",
      "ssh://-oProxyCommand=x@host/a.git",
      "ssh://%2DoProxyCommand=x@host/a.git",
      "-oProxyCommand=x@host:a.git",
      "git@-oProxyCommand=x:a.git",
      "ssh://git:pw@host/a.git",
      "ssh://git@host/a.git?x=1",
      "ssh://git@host/a.git;touch",
      "ssh://git@host/a b.git",
      "ssh://git@host/",
      "ssh://git@[::1]/a.git",
    ]) {
      const got = parseSshRemote(raw);
      assert.ok("problem" in got, `${raw} was accepted as ${JSON.stringify(got)}`);
    }
    for (const raw of ["https://host/a.git", "/srv/a.git", "file:///srv/a.git"]) {
      assert.equal(isSshRepoUrl(raw), false, raw);
    }
  });
});
