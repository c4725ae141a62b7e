import assert from "node:assert/strict";
import { test } from "node:test";
import { publicBindWarning } from "./bind-warning.js";

test("only loopback and the mesh's ULAs bind without a warning", () => {
  for (const quiet of ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "fd5a:1f00::1", "fc00::2"]) {
    assert.equal(publicBindWarning("node", quiet), undefined, quiet);
  }
  for (const loud of ["0.0.0.0", "::", "192.168.1.10", "203.0.113.7", "2001:db8::1", "example.com"]) {
    const warning = publicBindWarning("registry", loud);
    assert.match(warning ?? "", /tabbify registry: warning: listening on .*proxy or firewall/, loud);
  }
});
