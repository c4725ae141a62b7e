import assert from "node:assert/strict";
import { test } from "node:test";
import { parseHttpRepoUrl } from "./repo-url.js";

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
