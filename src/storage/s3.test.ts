import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { type S3rverHandle, startS3rver } from "../../test/support/s3rver.js";
import { isTabbifyError } from "../core/errors.js";
import { storageDriverSuite } from "./driver-suite.js";
import { S3Driver } from "./s3.js";

const BUCKET = "tabbify-test";
let s3rver: S3rverHandle;

before(async () => {
  s3rver = await startS3rver([BUCKET]);
  // The driver takes no keys: it uses the SDK's default chain, which reads these.
  Object.assign(process.env, s3rver.credentialsEnv);
});
after(async () => {
  await s3rver?.stop();
});

function driver(prefix: string, bucket = BUCKET): S3Driver {
  return new S3Driver({ bucket, endpoint: s3rver.endpoint, forcePathStyle: true, prefix });
}

// Every test gets its own prefix in the one bucket: fresh, empty storage without a new server.
storageDriverSuite("s3 (s3rver)", async () => {
  const prefix = `suite-${randomBytes(6).toString("hex")}/`;
  const d = driver(prefix);
  const twins: S3Driver[] = [];
  return {
    driver: d,
    twin: async () => {
      const t = driver(prefix);
      twins.push(t);
      return t;
    },
    cleanup: async () => {
      await d.delete(prefix.slice(0, -1)).catch(() => {});
      d.close();
      for (const t of twins) t.close();
    },
  };
});

describe("s3 driver against s3rver: errors and capabilities", () => {
  test("a missing bucket is STORAGE_BUCKET_MISSING on every operation", async () => {
    const d = driver("", "no-such-bucket");
    try {
      for (const op of [
        () => d.stat("x"),
        () => d.read("x"),
        () => d.getContent("x"),
        () => d.putContent("x", "y"),
        () => d.list(""),
        () => d.delete("x"),
      ]) {
        await assert.rejects(op(), (err: unknown) => isTabbifyError(err, "STORAGE_BUCKET_MISSING"));
      }
    } finally {
      d.close();
    }
  });

  test("bad credentials are STORAGE_DENIED, and the message holds no key material", async () => {
    const client = new S3Client({
      region: "us-east-1",
      endpoint: s3rver.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: "AKIAWRONGKEY", secretAccessKey: "wrong-secret-value" },
    });
    const d = new S3Driver({ bucket: BUCKET, client });
    try {
      await assert.rejects(d.putContent("x", "y"), (err: unknown) => {
        assert.ok(isTabbifyError(err, "STORAGE_DENIED"), String(err));
        assert.ok(!err.message.includes("wrong-secret-value"));
        return true;
      });
      await assert.rejects(d.stat("x"), (err: unknown) => isTabbifyError(err, "STORAGE_DENIED"));
    } finally {
      client.destroy();
    }
  });

  test("an unreachable endpoint is STORAGE_UNAVAILABLE", async () => {
    const d = new S3Driver({ bucket: BUCKET, endpoint: "http://127.0.0.1:1", forcePathStyle: true });
    try {
      await assert.rejects(d.stat("x"), (err: unknown) => isTabbifyError(err, "STORAGE_UNAVAILABLE"));
    } finally {
      d.close();
    }
  });

  test("exclusiveCreateScope tells the truth about how the server treats If-None-Match", async () => {
    // Ask the server directly: a second conditional PUT on an existing key must be refused (412)
    // by a server with conditional writes; s3rver 3.7 accepts it.
    const client = new S3Client({ region: "us-east-1", endpoint: s3rver.endpoint, forcePathStyle: true });
    const Key = `probe-truth/${randomBytes(6).toString("hex")}`;
    const put = () => client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: "x", IfNoneMatch: "*" }));
    let honoured: boolean;
    try {
      await put();
      try {
        await put();
        honoured = false;
      } catch (err) {
        assert.equal((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 412);
        honoured = true;
      }
    } finally {
      client.destroy();
    }
    const d = driver(`scope-${randomBytes(4).toString("hex")}/`);
    try {
      assert.equal(await d.exclusiveCreateScope(), honoured ? "store" : "instance");
      assert.deepEqual(await d.list(""), [], "the probe leaves nothing behind");
    } finally {
      d.close();
    }
  });
});
