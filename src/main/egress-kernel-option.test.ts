import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { requireCommand } from "../../test/support/tools.js";
import { isTabbifyError } from "../core/errors.js";
import { egressKernelFor, egressKernelMode } from "./egress-kernel-option.js";

describe("--egress-kernel", () => {
  it("takes auto or on, and names the flag otherwise", () => {
    assert.equal(egressKernelMode("auto"), "auto");
    assert.equal(egressKernelMode("on"), "on");
    assert.throws(
      () => egressKernelMode("off"),
      (err) => isTabbifyError(err, "USAGE") && /--egress-kernel/.test(err.message),
    );
  });

  it("on refuses a supervisor whose workloads have no app uid", async () => {
    await assert.rejects(egressKernelFor("on", false), (err) => isTabbifyError(err, "NET_ADMIN_REQUIRED"));
    assert.equal(await egressKernelFor("auto", false), "auto");
  });

  it("on is taken as root with nft", async () => {
    requireCommand("nft", "nftables");
    assert.equal(process.getuid?.(), 0, "this test runs as root, as CI does");
    assert.equal(await egressKernelFor("on", true), "on");
  });
});
