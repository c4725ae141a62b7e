import crypto from "node:crypto";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";

/**
 * Bearer checks for the node key. Both sides are hashed first, so the comparison runs on two
 * equal-length digests and `timingSafeEqual` never leaks the key's length or a matching prefix.
 */
export class NodeKeyCheck {
  private readonly keyDigest: Buffer | undefined;

  constructor(nodeKey: string | undefined) {
    this.keyDigest = nodeKey ? digest(nodeKey) : undefined;
  }

  get configured(): boolean {
    return this.keyDigest !== undefined;
  }

  /** Throws NODE_KEY_NOT_SET or UNAUTHORIZED; returns when the header carries the key. */
  assert(authorization: string | undefined): void {
    if (!this.keyDigest) {
      throw new TabbifyError(
        "NODE_KEY_NOT_SET",
        "the node key is not set (TABBIFY_NODE_KEY), so authenticated routes are disabled",
      );
    }
    const presented = bearerToken(authorization);
    if (presented === undefined) {
      throw new TabbifyError(
        "UNAUTHORIZED",
        "missing bearer token: send Authorization: Bearer <TABBIFY_NODE_KEY>",
      );
    }
    if (!crypto.timingSafeEqual(digest(presented), this.keyDigest)) {
      throw new TabbifyError("UNAUTHORIZED", "the bearer token is not this node's key");
    }
  }
}

function digest(value: string): Buffer {
  return crypto.createHash("sha256").update(value, "utf8").digest();
}
