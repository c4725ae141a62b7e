import assert from "node:assert/strict";
import { test } from "node:test";
import {
  appAddress,
  appUuidFromRepo,
  deriveAppLoopback,
  deriveAppUla,
  hostPort,
  parseAppUuid,
} from "./address.js";
import { isTabbifyError } from "./errors.js";

test("deriveAppUla matches the golden and cross-checked vectors", () => {
  const vectors: [string, string][] = [
    ["0191e7c2-1111-7222-8333-444455556666", "fd5a:1f02:44a5:240b:121a::1"],
    ["0191e7c2-2222-7222-8333-444455556666", "fd5a:1f02:42c7:a981:bdff::1"],
    ["019e7903-0000-7000-8000-000000000d03", "fd5a:1f02:d8a4:1b0f:e502::1"],
    ["019e7903-0000-7000-8000-000000000f01", "fd5a:1f02:2681:3916:d66b::1"],
    ["00000000-0000-0000-0000-000000000000", "fd5a:1f02:e572:dff8:2304::1"],
  ];
  for (const [uuid, ula] of vectors) assert.equal(deriveAppUla(uuid), ula, uuid);
});

test("uppercase and lowercase spellings of one uuid get one address", () => {
  assert.equal(deriveAppUla("0191E7C2-1111-7222-8333-444455556666"), "fd5a:1f02:44a5:240b:121a::1");
});

test("the loopback twin comes from the same digest and stays inside 127/8, off 127.0/16", () => {
  assert.equal(deriveAppLoopback("0191e7c2-1111-7222-8333-444455556666"), "127.68.165.37");
  for (let i = 0; i < 500; i++) {
    const uuid = `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
    const octets = deriveAppLoopback(uuid).split(".").map(Number);
    assert.equal(octets[0], 127);
    assert.ok(octets[1]! >= 1 && octets[1]! <= 255);
    assert.ok(octets[3]! >= 1 && octets[3]! <= 254);
  }
});

test("appAddress picks by mesh mode", () => {
  const uuid = "0191e7c2-1111-7222-8333-444455556666";
  assert.equal(appAddress(uuid, "ula"), "fd5a:1f02:44a5:240b:121a::1");
  assert.equal(appAddress(uuid, "local"), "127.68.165.37");
});

test("appUuidFromRepo is UUID v5 in the URL namespace", () => {
  // Expected values computed independently with Python's uuid.uuid5(uuid.NAMESPACE_URL, url).
  const uuid = appUuidFromRepo("https://github.com/tabbify-io/hello-deploy");
  assert.equal(uuid, "cc4bfba2-17a9-512d-b6f4-43f69114be65");
  assert.equal(
    appUuidFromRepo("http://www.ietf.org/rfc/rfc4122.txt"),
    "d0690b3c-b29d-52e7-81b0-d573b503f2d4",
  );
  assert.notEqual(uuid, appUuidFromRepo("https://github.com/tabbify-io/hello-deploy.git"));
});

test("malformed uuids are refused with UUID_INVALID", () => {
  for (const bad of ["", "not-a-uuid", "0191e7c2-1111-7222-8333-44445555666", "../../etc/passwd"]) {
    assert.throws(
      () => deriveAppUla(bad),
      (e) => isTabbifyError(e, "UUID_INVALID"),
    );
    assert.throws(
      () => parseAppUuid(bad),
      (e) => isTabbifyError(e, "UUID_INVALID"),
    );
  }
});

test("hostPort brackets IPv6", () => {
  assert.equal(hostPort("fd5a:1f02:44a5:240b:121a::1", 8730), "[fd5a:1f02:44a5:240b:121a::1]:8730");
  assert.equal(hostPort("127.68.165.37", 8730), "127.68.165.37:8730");
});
