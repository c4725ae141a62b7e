import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connectionListed, endToEnd, withoutNamed } from "./http-hop.js";

describe("hop-by-hop headers", () => {
  test("the standard set is dropped whatever its spelling; the rest keep theirs", () => {
    const out = endToEnd([
      "Transfer-Encoding",
      "chunked",
      "UPGRADE",
      "x",
      "Proxy-Authorization",
      "p",
      "Keep-Alive",
      "timeout=5",
      "TE",
      "trailers",
      "Host",
      "h",
      "X-A",
      "1",
    ]);
    assert.deepEqual(out.headers, ["Host", "h", "X-A", "1"]);
    assert.equal(out.upgrade, "x");
    assert.equal(out.hasBody, true);
  });

  test("names a Connection header lists are dropped, even before it", () => {
    const out = endToEnd([
      "X-Drop",
      "1",
      "Connection",
      "keep-alive, X-Drop",
      "connection",
      "x-other",
      "X-Other",
      "2",
      "X-Keep",
      "3",
    ]);
    assert.deepEqual(out.headers, ["X-Keep", "3"]);
  });

  test("repeated headers stay separate", () => {
    assert.deepEqual(endToEnd(["Set-Cookie", "a=1", "Set-Cookie", "b=2"]).headers, [
      "Set-Cookie",
      "a=1",
      "Set-Cookie",
      "b=2",
    ]);
  });

  test("a body is declared by a non-zero Content-Length or any Transfer-Encoding", () => {
    assert.equal(endToEnd(["Host", "h"]).hasBody, false);
    assert.equal(endToEnd(["Content-Length", "0"]).hasBody, false);
    assert.equal(endToEnd(["Content-Length", "7"]).hasBody, true);
    assert.equal(endToEnd(["transfer-encoding", "chunked"]).hasBody, true);
  });

  test("Connection options that are not extra header names list nothing", () => {
    assert.equal(connectionListed(undefined), undefined);
    assert.equal(connectionListed("close"), undefined);
    assert.equal(connectionListed(" Keep-Alive , Upgrade ,"), undefined);
    assert.deepEqual(connectionListed("close, X-A"), new Set(["x-a"]));
  });

  test("withoutNamed matches names case-insensitively", () => {
    assert.deepEqual(withoutNamed(["X-A", "1", "x-b", "2"], new Set(["x-a"])), ["x-b", "2"]);
  });
});
